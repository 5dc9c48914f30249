using System.Threading.Channels;
using Weft.Contracts.Control;

namespace Weft.NodeAgent.Control;

/// <summary>
/// Writes netmaps to the <see cref="INetMapCache"/> on a background task, so that the ControlClient
/// never waits for a disk. Only the newest map matters: one queued behind a write in progress
/// replaces any older one still waiting. A failed write is logged and the next one tries again.
/// A writer that takes over from another (a restarted ControlClient's) writes nothing until the other
/// has finished: two writers at once could leave the older map on disk.
/// </summary>
public sealed class NetMapCacheWriter : IAsyncDisposable
{
    private readonly INetMapCache _cache;
    private readonly Action<string> _warn;
    private readonly Channel<NetMap?> _queue = Channel.CreateBounded<NetMap?>(new BoundedChannelOptions(1)
    {
        FullMode = BoundedChannelFullMode.DropOldest,
        SingleReader = true,
    });
    private readonly Task _writer;

    /// <param name="after">The writes of the writer this one takes over from (its <see cref="DisposeAsync"/>), or null.</param>
    public NetMapCacheWriter(INetMapCache cache, Action<string> warn, Task? after = null)
    {
        _cache = cache;
        _warn = warn;
        _writer = Task.Run(() => WriteLoop(after));
    }

    /// <summary>Queues <paramref name="map"/> to be written (replacing one not yet written).</summary>
    public void Write(NetMap map) => _queue.Writer.TryWrite(map);

    /// <summary>Queues the removal of the cache (the device is gone); a map queued before it is dropped.</summary>
    public void Delete() => _queue.Writer.TryWrite(null);

    private async Task WriteLoop(Task? after)
    {
        if (after is not null)
        {
            try { await after; }
            catch (Exception e) { _warn("The previous netmap cache writer failed: " + e.Message); }
        }
        await foreach (var map in _queue.Reader.ReadAllAsync())
        {
            try
            {
                if (map is null) _cache.Delete();
                else _cache.Save(map);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _warn("Cannot write the netmap cache: " + e.Message);
            }
        }
    }

    /// <summary>Writes what is still queued, then stops.</summary>
    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _writer;
    }
}
