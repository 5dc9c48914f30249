using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay;

/// <summary>
/// One logged-in connection on the relay's side: a reader that routes what the client sends, and a
/// writer that drains three queues in order (control frames, disco, data). The data and disco
/// queues are bounded and drop their oldest packet when full, so a slow client loses old packets
/// instead of slowing everyone else, and a backlog of data never delays disco.
/// </summary>
internal sealed class RelayConnection
{
    private readonly RelayServer _server;
    private readonly Stream _stream;
    private readonly RelayFrameReader _reader;
    private readonly RelayOutbox _outbox;
    private readonly CancellationTokenSource _closing = new();
    private long _lastReadTicks = Environment.TickCount64;
    private long _lastPeerGoneNotHere;
    /// <summary>When the pending liveness probe was sent (0: none pending).</summary>
    private long _probeSentAt;
    // The probe whose ping the client answered (its pong carries the probe's payload back).
    private long _probeAnswered;
    private int _peerGoneBurst = 3;

    public RelayConnection(RelayServer server, Stream stream, RelayFrameReader reader, Curve25519PublicKey key, bool isMesh, RelayTicket? ticket)
    {
        Ticket = ticket;
        _server = server;
        _stream = stream;
        _reader = reader;
        Key = key;
        IsMesh = isMesh;
        var counters = server.Counters;
        // A mesh peer learns where every client is from this connection's PeerPresent and PeerGone frames,
        // all of them queued at once when it starts watching: a dropped one would be a client it never
        // reaches (or one it forwards into nothing) for as long as the link lasts. So a mesh connection's
        // control queue drops nothing; if its peer falls that far behind, the link is closed, and the peer
        // dials again and hears everything afresh.
        _outbox = new RelayOutbox(isMesh ? server.Options.MeshControlQueueDepth : ClientControlDepth, server.Options.DiscoQueueDepth, server.Options.QueueDepth,
            discoDropped: () => counters.Dropped("disco_queue_full"), dataDropped: () => counters.Dropped("queue_full"),
            controlOverflowed: isMesh ? MeshControlOverflowed : null);
    }

    private void MeshControlOverflowed()
    {
        _server.Counters.Dropped("mesh_control_overflow");
        Close();
    }

    /// <summary>Control frames a client's connection holds before it drops the oldest (pongs, health, PeerGone, keepalives).</summary>
    internal const int ClientControlDepth = 256;

    public Curve25519PublicKey Key { get; }

    /// <summary>The ticket the client logged in with (null for a mesh peer); the relay asks its issuer about it again while the connection lasts.</summary>
    public RelayTicket? Ticket { get; }

    /// <summary>The tailnet its ticket names (null for a mesh peer): packets pass only between clients of one tailnet.</summary>
    public string? TailnetId => Ticket?.TailnetId;

    /// <summary>Another relay of the region (it proved the mesh key): it may watch and forward, and is not a client.</summary>
    public bool IsMesh { get; }

    /// <summary>Keys this client sent to recently: they hear a PeerGone when it leaves.</summary>
    public ConcurrentDictionary<Curve25519PublicKey, byte> SentTo { get; } = new();

    /// <summary>The next control frame queued for this connection and not written yet (tests).</summary>
    internal bool TryTakeQueuedControl(out byte[] frame) => _outbox.TryTakeControl(out frame);

    /// <summary>Queues a control frame (pong, health, PeerGone, PeerPresent, keepalive) ahead of packets.</summary>
    public void EnqueueControl(byte[] frame)
    {
        if (!_closing.IsCancellationRequested) _outbox.TryEnqueueControl(frame);
    }

    /// <summary>Queues a frame carrying <paramref name="packet"/> (disco and data wait in queues of their own).</summary>
    public void EnqueuePacket(byte[] frame, ReadOnlySpan<byte> packet)
    {
        if (!_closing.IsCancellationRequested) _outbox.TryEnqueuePacket(frame, packet);
    }

    public void Close() => _closing.Cancel();

    /// <summary>
    /// Pings the client, and closes the connection if nothing at all arrives from it within the options'
    /// <see cref="RelayOptions.LivenessProbeTimeout"/> (a client answers pings; one that is there and busy sends anyway).
    /// One probe at a time; a mesh peer is never probed (its link has its own liveness).
    /// </summary>
    public void ProbeLiveness()
    {
        if (IsMesh || IsClosing) return;
        var sentAt = Environment.TickCount64;
        if (Interlocked.CompareExchange(ref _probeSentAt, sentAt, 0) != 0) return;
        EnqueueControl(RelayFrame.Build(RelayFrameType.Ping, BitConverter.GetBytes(sentAt)));
        _ = Task.Delay(_server.Options.LivenessProbeTimeout).ContinueWith(_ =>
        {
            Interlocked.Exchange(ref _probeSentAt, 0);
            // Only the probe's own pong proves the far end is there: a frame it sent before it went away can still be
            // read after the ping left (buffered in the network on the way), and taken for an answer it kept the
            // connection, and delivered into it, until the idle timeout.
            if (Interlocked.Read(ref _probeAnswered) == sentAt || IsClosing) return;
            _server.Counters.Refused("unanswered_probe");
            Close();
        }, TaskScheduler.Default);
    }

    /// <summary>Closed, or closing: nothing more is queued for it.</summary>
    internal bool IsClosing => _closing.IsCancellationRequested;

    /// <summary>Tells the client why (a health frame), and closes a moment later, once the frame had its chance to leave.</summary>
    public async Task CloseSayingAsync(string reason, CancellationToken cancel)
    {
        EnqueueControl(RelayFrame.Build(RelayFrameType.Health, System.Text.Encoding.UTF8.GetBytes(reason)));
        await Task.Delay(200, cancel);
        Close();
    }

    /// <summary>PeerGone(not here) answers disco for unknown keys at most once a second, after a burst of three (DERP's limit).</summary>
    public bool AllowPeerGoneNotHere()
    {
        var now = Environment.TickCount64;
        if (now - Interlocked.Read(ref _lastPeerGoneNotHere) >= 1000) { _peerGoneBurst = 3; }
        if (_peerGoneBurst <= 0) return false;
        _peerGoneBurst--;
        Interlocked.Exchange(ref _lastPeerGoneNotHere, now);
        return true;
    }

    public async Task RunAsync(DateTimeOffset? ticketExpiry, CancellationToken stopping)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(stopping, _closing.Token);
        var writer = Task.Run(() => WriteLoopAsync(linked.Token));
        var keepalive = Task.Run(() => KeepAliveLoopAsync(ticketExpiry, linked.Token));
        try
        {
            await ReadLoopAsync(linked.Token);
        }
        finally
        {
            _closing.Cancel();
            await Task.WhenAll(writer, keepalive).ContinueWith(_ => { });
        }
    }

    private async Task ReadLoopAsync(CancellationToken cancel)
    {
        var counters = _server.Counters;
        while (await _reader.ReadAsync(cancel) is { } frame)
        {
            Interlocked.Exchange(ref _lastReadTicks, Environment.TickCount64);
            var payload = frame.Payload;
            switch (frame.Type)
            {
                case RelayFrameType.SendPacket when !IsMesh:
                    if (payload.Length < RelayFrame.KeySize) { counters.Dropped("short_send"); break; }
                    _server.MarkActive(this);
                    _server.Route(this, new Curve25519PublicKey(payload.AsSpan(0, RelayFrame.KeySize)), payload.AsSpan(RelayFrame.KeySize));
                    break;
                case RelayFrameType.ForwardPacket when IsMesh:
                    if (payload.Length < 2 * RelayFrame.KeySize) { counters.Dropped("short_forward"); break; }
                    // Delivered here or nowhere: a forwarded packet never takes a second hop.
                    // (The mesh peer checked the tailnets before forwarding.)
                    if (!_server.Deliver(new Curve25519PublicKey(payload.AsSpan(0, RelayFrame.KeySize)), null,
                            new Curve25519PublicKey(payload.AsSpan(RelayFrame.KeySize, RelayFrame.KeySize)), payload.AsSpan(2 * RelayFrame.KeySize)))
                        counters.Dropped("forward_unknown_destination");
                    break;
                case RelayFrameType.WatchConns when IsMesh:
                    _server.AddWatcher(this);
                    break;
                case RelayFrameType.ClosePeer when IsMesh:
                    if (payload.Length >= RelayFrame.KeySize) _server.ClosePeer(new Curve25519PublicKey(payload.AsSpan(0, RelayFrame.KeySize)));
                    break;
                case RelayFrameType.NotePreferred:
                    // Informational (DERP keeps it for statistics, which this relay does not have yet); only its shape is checked.
                    if (payload.Length != 1) throw new RelayProtocolException("bad_note_preferred", "NotePreferred carries exactly one byte");
                    break;
                case RelayFrameType.Ping:
                    if (payload.Length < RelayFrame.PingSize) { counters.Dropped("short_ping"); break; }
                    EnqueueControl(RelayFrame.Build(RelayFrameType.Pong, payload.AsSpan(0, RelayFrame.PingSize)));
                    break;
                case RelayFrameType.Pong:
                    if (payload.Length >= sizeof(long) && BitConverter.ToInt64(payload, 0) is var answered && answered != 0 && answered == Interlocked.Read(ref _probeSentAt))
                        Interlocked.Exchange(ref _probeAnswered, answered);
                    break;
                case RelayFrameType.SendPacket or RelayFrameType.ForwardPacket or RelayFrameType.WatchConns or RelayFrameType.ClosePeer:
                    counters.Dropped(IsMesh ? "client_frame_from_mesh" : "mesh_frame_from_client");
                    break;
                default:
                    counters.Dropped("unknown_frame_type"); // skipped, as DERP does, for forward compatibility
                    break;
            }
        }
    }

    private async Task WriteLoopAsync(CancellationToken cancel)
    {
        try
        {
            await _outbox.DrainAsync(_stream, cancel);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException or System.Net.Sockets.SocketException)
        {
            _closing.Cancel();
        }
    }

    /// <summary>Keepalives (with jitter), the idle timeout, and the end of the ticket: past it, the client must log in again with a fresh one.</summary>
    private async Task KeepAliveLoopAsync(DateTimeOffset? ticketExpiry, CancellationToken cancel)
    {
        var options = _server.Options;
        var keepalive = RelayFrame.Build(RelayFrameType.KeepAlive, []);
        try
        {
            while (!cancel.IsCancellationRequested)
            {
                var jitter = TimeSpan.FromMilliseconds(Random.Shared.Next(0, (int)Math.Max(1, options.KeepAliveInterval.TotalMilliseconds / 12)));
                await Task.Delay(options.KeepAliveInterval + jitter, cancel);
                if (Environment.TickCount64 - Interlocked.Read(ref _lastReadTicks) > options.IdleTimeout.TotalMilliseconds)
                {
                    _server.Counters.Refused("idle_timeout");
                    _closing.Cancel();
                    return;
                }
                if (ticketExpiry is { } expiry && options.Clock() >= expiry)
                {
                    _server.Counters.Refused("ticket_expired_in_session");
                    await CloseSayingAsync("ticket expired", cancel);
                    return;
                }
                EnqueueControl(keepalive);
            }
        }
        catch (OperationCanceledException) { }
        finally
        {
            // Unblock the read loop: closing the stream ends a pending read.
            if (_closing.IsCancellationRequested) await _stream.DisposeAsync();
        }
    }
}
