using System.Threading.Channels;

namespace Weft.Cluster.Sessions;

/// <summary>
/// The frames a session has for its agent, waiting for the stream's writer loop, bounded both in number
/// and in bytes (a full map of a big tailnet is most of a megabyte; a thousand of them queued for an agent
/// that stopped reading would be a gigabyte). Full, it refuses a frame and the session ends the stream:
/// the agent resumes from its last version on reconnect. A queue that dropped the frame instead would lose
/// deltas, key rotations and tickets without a word.
/// <para>
/// How the stream ends matters as much: an agent that stopped reading (or withholds HTTP/2 flow control)
/// would keep the writer waiting on it with everything queued. So <see cref="Abandon"/> (the agent cannot
/// keep up) drops what is queued and ends the stream at once, and <see cref="Complete"/> (the session is
/// over) lets the writer send what is queued, the last words included, for a few seconds at most.
/// </para>
/// </summary>
public sealed class AgentStreamQueue
{
    /// <summary>Frames a session may queue before the agent counts as too slow.</summary>
    public const int DefaultFrames = 1024;

    /// <summary>Bytes a session may queue before the agent counts as too slow: a few of the biggest full maps.</summary>
    public const long DefaultBytes = 16L * 1024 * 1024;

    /// <summary>How long an ended session's last frames may take to reach an agent that no longer reads.</summary>
    public static readonly TimeSpan DefaultDrainLimit = TimeSpan.FromSeconds(10);

    private readonly Channel<byte[]> _frames;
    private readonly long _maxBytes;
    private readonly TimeSpan _drainLimit;
    private readonly CancellationTokenSource _abandoned = new();
    private long _bytes;

    public AgentStreamQueue(int frames = DefaultFrames, long bytes = DefaultBytes, TimeSpan? drainLimit = null)
    {
        _drainLimit = drainLimit ?? DefaultDrainLimit;
        _frames = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(frames) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        _maxBytes = bytes;
    }

    /// <summary>Queues a frame; false when the queue is full (in frames or bytes) or completed. A frame bigger than the byte limit goes alone.</summary>
    public bool TryQueue(byte[] frame)
    {
        var queued = Interlocked.Add(ref _bytes, frame.Length);
        if (queued > _maxBytes && queued != frame.Length)
        {
            Interlocked.Add(ref _bytes, -frame.Length);
            return false;
        }
        if (_frames.Writer.TryWrite(frame)) return true;
        Interlocked.Add(ref _bytes, -frame.Length);
        return false;
    }

    /// <summary>Whether the queue takes no more frames (completed or abandoned): a refused frame then means the stream is ending, not that the agent is slow.</summary>
    public bool IsCompleted => Volatile.Read(ref _completed);

    private bool _completed;

    /// <summary>The session is over: what is queued still goes (within the drain limit, 10 s by default), then the stream ends.</summary>
    public void Complete()
    {
        Volatile.Write(ref _completed, true);
        if (_frames.Writer.TryComplete()) _abandoned.CancelAfter(_drainLimit);
    }

    /// <summary>The agent does not read: the stream ends now, and what is queued is dropped with it.</summary>
    public void Abandon()
    {
        Volatile.Write(ref _completed, true);
        _frames.Writer.TryComplete();
        // Off this thread: the cancellation ends the gRPC call's reads and writes, which is not the session's work.
        _ = _abandoned.CancelAsync();
    }

    /// <summary>Cancelled when the stream must end without sending more (abandoned, or its drain took too long).</summary>
    public CancellationToken Abandoned => _abandoned.Token;

    /// <summary>The writer loop's side: frames in order, until completed.</summary>
    public IAsyncEnumerable<byte[]> ReadAllAsync(CancellationToken cancel = default) => Sent(_frames.Reader.ReadAllAsync(cancel));

    private async IAsyncEnumerable<byte[]> Sent(IAsyncEnumerable<byte[]> frames)
    {
        await foreach (var frame in frames)
        {
            Interlocked.Add(ref _bytes, -frame.Length);
            yield return frame;
        }
    }

    /// <summary>The next frame without waiting, if there is one (tests read the stream so).</summary>
    public bool TryRead(out byte[] frame)
    {
        if (!_frames.Reader.TryRead(out frame!)) return false;
        Interlocked.Add(ref _bytes, -frame.Length);
        return true;
    }

    /// <summary>The next frame, waiting for it (tests read the stream so).</summary>
    public async ValueTask<byte[]> ReadAsync(CancellationToken cancel)
    {
        var frame = await _frames.Reader.ReadAsync(cancel);
        Interlocked.Add(ref _bytes, -frame.Length);
        return frame;
    }

    /// <summary>Done when the queue is completed and everything in it read.</summary>
    public Task Completion => _frames.Reader.Completion;
}
