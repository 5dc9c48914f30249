using System.Threading.Channels;
using Weft.Contracts.Relay;

namespace Weft.Relay;

/// <summary>
/// The frames waiting to be written on one relay connection (either side), in three bounded
/// queues drained in this order: control frames, then disco, then data. Each queue drops its
/// oldest frame when full, so a slow reader loses old packets rather than holding up the sender,
/// and a backlog of data never delays disco or control. Enqueueing never blocks. The one exception
/// is a control queue given <c>controlOverflowed</c>: it never drops a frame, and a frame that finds it
/// full is refused and reported instead (a mesh peer's presence announcements must all arrive, or the
/// link must start over).
/// </summary>
internal sealed class RelayOutbox
{
    private readonly Channel<byte[]> _control;
    private readonly Channel<byte[]> _disco;
    private readonly Channel<byte[]> _data;
    /// <summary>
    /// Set when something was queued since the writer last looked (at most one pending wake: a count per frame
    /// would grow without bound behind a writer that is stuck, and overflow into an exception in the sender's thread).
    /// </summary>
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly Action? _controlOverflowed;

    /// <param name="discoDropped">Called for each disco frame dropped to make room.</param>
    /// <param name="dataDropped">Called for each data frame dropped to make room.</param>
    /// <param name="controlOverflowed">Given: the control queue drops nothing, and this is called when a frame finds it full.</param>
    public RelayOutbox(int controlDepth, int discoDepth, int dataDepth, Action? discoDropped = null, Action? dataDropped = null, Action? controlOverflowed = null)
    {
        _control = controlOverflowed is null
            ? Bounded(controlDepth, null)
            : Channel.CreateBounded<byte[]>(new BoundedChannelOptions(controlDepth) { FullMode = BoundedChannelFullMode.Wait });
        _controlOverflowed = controlOverflowed;
        _disco = Bounded(discoDepth, discoDropped);
        _data = Bounded(dataDepth, dataDropped);
    }

    private static Channel<byte[]> Bounded(int depth, Action? dropped) =>
        Channel.CreateBounded<byte[]>(new BoundedChannelOptions(depth) { FullMode = BoundedChannelFullMode.DropOldest },
            dropped is null ? null : _ => dropped());

    /// <summary>A frame ahead of every packet (pings, pongs, health, mesh control).</summary>
    public bool TryEnqueueControl(byte[] frame)
    {
        if (Enqueue(_control, frame)) return true;
        _controlOverflowed?.Invoke(); // a dropping queue never refuses: only one that may not drop gets here
        return false;
    }

    /// <summary>The next queued control frame, taken without a stream (tests read what a connection was told).</summary>
    internal bool TryTakeControl(out byte[] frame) => _control.Reader.TryRead(out frame!);

    /// <summary>A frame that carries <paramref name="packet"/>: to the disco queue if it is disco, else the data queue.</summary>
    public bool TryEnqueuePacket(byte[] frame, ReadOnlySpan<byte> packet) => Enqueue(RelayFrame.IsDisco(packet) ? _disco : _data, frame);

    private bool Enqueue(Channel<byte[]> queue, byte[] frame)
    {
        var queued = queue.Writer.TryWrite(frame);
        Wake();
        return queued;
    }

    private void Wake()
    {
        if (_wake.CurrentCount > 0) return;
        try { _wake.Release(); }
        catch (SemaphoreFullException) { } // another sender woke it between the look and the release
    }

    /// <summary>Wakes waiting for the writer (tests: never more than one, however much is queued).</summary>
    internal int PendingWakes => _wake.CurrentCount;

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
