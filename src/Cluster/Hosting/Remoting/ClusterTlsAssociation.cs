using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Threading.Channels;
using Akka.Actor;
using Akka.Event;
using Akka.Remote.Transport;
using Google.Protobuf;

namespace Weft.Cluster.Hosting.Remoting;

/// <summary>
/// One authenticated connection between two nodes, as Akka.Remote sees it. Writes queue and go out in
/// order, coalesced into TLS records of up to 64 KiB; frames read are handed to the listener Akka
/// registers, and reading starts only once it has (one Akka never claims is closed after the claim
/// wait). When the connection ends, for any reason, the listener hears <see cref="Disassociated"/> once.
/// </summary>
internal sealed class ClusterTlsAssociation : AssociationHandle
{
    private const int FrameHeaderBytes = 4;
    private const int CoalesceBytes = 64 * 1024;

    private readonly Socket _socket;
    private readonly SslStream _stream;
    private readonly long _maximumFrameBytes;
    private readonly TimeSpan _flushWait;
    private readonly TimeSpan _claimWait;
    private readonly ILoggingAdapter _log;
    private readonly Action<ClusterTlsAssociation> _closed;
    private readonly Channel<ByteString> _outbound = Channel.CreateUnbounded<ByteString>(new UnboundedChannelOptions { SingleReader = true });
    private readonly TaskCompletionSource _writerDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _readerDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private IHandleEventListener? _listener;
    private int _disassociateSent;
    private int _disposed;

    public ClusterTlsAssociation(Address localAddress, Address remoteAddress, Socket socket, SslStream stream, long maximumFrameBytes, TimeSpan flushWait,
        TimeSpan claimWait, ILoggingAdapter log, Action<ClusterTlsAssociation> closed) : base(localAddress, remoteAddress)
    {
        _socket = socket;
        _stream = stream;
        _maximumFrameBytes = maximumFrameBytes;
        _flushWait = flushWait;
        _claimWait = claimWait;
        _log = log;
        _closed = closed;
        _ = WriteLoop();
        _ = ReadLoop();
    }

    /// <summary>Queues <paramref name="payload"/>; false once the connection is closing (Akka then buffers or drops it).</summary>
    public override bool Write(ByteString payload) => Volatile.Read(ref _disposed) == 0 && _outbound.Writer.TryWrite(payload);

    [Obsolete("Use the method that states reasons to make sure disassociation reasons are logged.")]
    public override void Disassociate() => _ = CloseGracefully();

    /// <summary>
    /// What was queued goes out, then this side says it is done (TLS close_notify and a FIN) and waits,
    /// at most akka.remote.flush-wait-on-shutdown, for the other side to close too: closing with data
    /// unread would reset the connection and could lose the last frames in flight either way.
    /// </summary>
    public async Task CloseGracefully()
    {
        _outbound.Writer.TryComplete();
        await Task.WhenAny(Task.WhenAll(_writerDone.Task, _readerDone.Task), Task.Delay(_flushWait));
        Dispose();
    }

    private async Task WriteLoop()
    {
        var header = new byte[FrameHeaderBytes];
        var output = new BufferedStream(_stream, CoalesceBytes);
        try
        {
            var queued = _outbound.Reader;
            while (await queued.WaitToReadAsync())
            {
                while (queued.TryRead(out var payload))
                {
                    BinaryPrimitives.WriteInt32LittleEndian(header, payload.Length);
                    await output.WriteAsync(header);
                    await output.WriteAsync(payload.Memory);
                }
                await output.FlushAsync();
            }
            // Closing: everything queued is out. Tell the other side, which closes its end in turn.
            await _stream.ShutdownAsync();
            _socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e)
        {
            if (Volatile.Read(ref _disposed) == 0) _log.Debug("Writing to {0} failed: {1}", RemoteAddress, e.Message);
            Dispose();
        }
        finally
        {
            _writerDone.TrySetResult();
        }
    }

    private async Task ReadLoop()
    {
        // Akka claims a connection as soon as it has it. One it has not claimed within the claim wait never will be:
        // the actor it was meant for gave up first (Akka's handshake-timeout ran out while this connection was
        // still being made) and the connection went to its dead letters. Closed, rather than left open with no one
        // reading it for the rest of the process's life. (Akka sets the listener with SetResult, which throws on a
        // completed source, so the source itself is left alone.)
        var claimed = ReadHandlerSource.Task;
        if (await Task.WhenAny(claimed, _ended.Task, Task.Delay(_claimWait)).ConfigureAwait(false) != claimed)
        {
            if (!_ended.Task.IsCompleted) _log.Debug("Closing the cluster connection with {0}: nothing claimed it within {1}", RemoteAddress, _claimWait);
            _readerDone.TrySetResult();
            Dispose();
            // Should a claim come after all, its claimant hears at once that the connection is gone.
            _ = claimed.ContinueWith(late => late.Result.Notify(new Disassociated(DisassociateInfo.Unknown)), TaskContinuationOptions.OnlyOnRanToCompletion);
            return;
        }
        var listener = await claimed;
        await Task.Yield(); // off the thread that registered the listener (an actor's)
        _listener = listener;
        var why = "the other side closed the connection";
        var reader = PipeReader.Create(_stream, new StreamPipeReaderOptions(bufferSize: CoalesceBytes, minimumReadSize: 4096, leaveOpen: true));
        try
        {
            while (true)
            {
                var read = await reader.ReadAsync();
                var buffer = read.Buffer;
                while (TryReadFrame(ref buffer, out var frame))
                    if (!frame.IsEmpty) listener.Notify(new InboundPayload(frame)); // an empty frame carries nothing (Akka's transport skips it too)
                reader.AdvanceTo(buffer.Start, buffer.End);
                if (read.IsCompleted) break;
            }
        }
        catch (FrameTooLargeException e)
        {
            why = e.Message;
            _log.Warning("Closing the cluster connection with {0}: {1}", RemoteAddress, e.Message);
        }
        catch (Exception e)
        {
            why = e.Message;
        }
        finally
        {
            await reader.CompleteAsync();
            _readerDone.TrySetResult();
            NotifyDisassociated(why);
            Dispose();
        }
    }

    private bool TryReadFrame(ref ReadOnlySequence<byte> buffer, out ByteString frame)
    {
        frame = ByteString.Empty;
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryReadLittleEndian(out int length)) return false;
        if (length < 0 || length > _maximumFrameBytes)
            throw new FrameTooLargeException($"it sent a frame of {length} bytes; the largest allowed is {_maximumFrameBytes} (akka.remote.weft-tls.maximum-frame-size)");
        if (reader.Remaining < length) return false;
        var payload = buffer.Slice(FrameHeaderBytes, length);
        frame = payload.IsSingleSegment ? ByteString.CopyFrom(payload.FirstSpan) : UnsafeByteOperations.UnsafeWrap(payload.ToArray());
        buffer = buffer.Slice(payload.End);
        return true;
    }

    private void NotifyDisassociated(string why)
    {
        if (Interlocked.Exchange(ref _disassociateSent, 1) == 1) return;
        _log.Debug("The cluster connection with {0} ended: {1}", RemoteAddress, why);
        _listener?.Notify(new Disassociated(DisassociateInfo.Unknown));
    }

    private void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        _outbound.Writer.TryComplete();
        _stream.Dispose(); // and the socket: pending reads and writes end, and each loop finishes
        _ended.TrySetResult(); // and the reader that still waits for a listener, if none came, ends too
        _closed(this);
    }

    private sealed class FrameTooLargeException(string message) : Exception(message);
}
