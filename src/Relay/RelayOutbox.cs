using System.Threading.Channels;
using Weft.Contracts.Relay;

namespace Weft.Relay;

/// <summary>
/// The frames waiting to be written on one relay connection (either side), in three bounded
/// queues drained in this order: control frames, then disco, then data. Each queue drops its
/// oldest frame when full, so a slow reader loses old packets rather than holding up the sender,
/// and a backlog of data never delays disco or control. Enqueueing never blocks.
/// </summary>
internal sealed class RelayOutbox
{
    private readonly Channel<byte[]> _control;
    private readonly Channel<byte[]> _disco;
    private readonly Channel<byte[]> _data;
    private readonly SemaphoreSlim _wake = new(0);

    /// <param name="discoDropped">Called for each disco frame dropped to make room.</param>
    /// <param name="dataDropped">Called for each data frame dropped to make room.</param>
    public RelayOutbox(int controlDepth, int discoDepth, int dataDepth, Action? discoDropped = null, Action? dataDropped = null)
    {
        _control = Bounded(controlDepth, null);
        _disco = Bounded(discoDepth, discoDropped);
        _data = Bounded(dataDepth, dataDropped);
    }

    private static Channel<byte[]> Bounded(int depth, Action? dropped) =>
        Channel.CreateBounded<byte[]>(new BoundedChannelOptions(depth) { FullMode = BoundedChannelFullMode.DropOldest },
            dropped is null ? null : _ => dropped());

    /// <summary>A frame ahead of every packet (pings, pongs, health, mesh control).</summary>
    public bool TryEnqueueControl(byte[] frame) => Enqueue(_control, frame);

    /// <summary>The next queued control frame, taken without a stream (tests read what a connection was told).</summary>
    internal bool TryTakeControl(out byte[] frame) => _control.Reader.TryRead(out frame!);

    /// <summary>A frame that carries <paramref name="packet"/>: to the disco queue if it is disco, else the data queue.</summary>
    public bool TryEnqueuePacket(byte[] frame, ReadOnlySpan<byte> packet) => Enqueue(RelayFrame.IsDisco(packet) ? _disco : _data, frame);

    private bool Enqueue(Channel<byte[]> queue, byte[] frame)
    {
        var queued = queue.Writer.TryWrite(frame);
        _wake.Release();
        return queued;
    }

    /// <summary>Writes queued frames to <paramref name="stream"/> in priority order until cancelled; stream errors end it by throwing.</summary>
    public async Task DrainAsync(Stream stream, CancellationToken cancel)
    {
        while (!cancel.IsCancellationRequested)
        {
            await _wake.WaitAsync(cancel);
            while (_control.Reader.TryRead(out var frame) || _disco.Reader.TryRead(out frame) || _data.Reader.TryRead(out frame))
                await stream.WriteAsync(frame, cancel);
            await stream.FlushAsync(cancel);
        }
    }
}
