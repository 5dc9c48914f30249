using System.Buffers.Binary;
using System.Net.Sockets;
using Weft.NodeAgent.Filter;
using Weft.NodeAgent.Net;

namespace Weft.NodeAgent.WireGuard;

// UDP → TUN: the inbound packet path (wireguard-go receive.go).
public sealed partial class WireGuardDevice
{
    private void RunUdpReceiver(UdpTransport transport, Socket socket)
    {
        using var batch = new PacketBatch(BatchSize, Math.Max(2048, LargestMtu + 128));
        Span<int> deliver = stackalloc int[BatchSize];
        while (!_stopping)
        {
            var count = transport.Receive(socket, batch);
            if (count < 0) return;
            if (count == 0) continue;
            var now = Clock.NowMs;
            var delivered = 0;
            for (var i = 0; i < count; i++)
            {
                var address = batch.Address(i)[..batch.AddressLengths[i]];
                var inner = ReceiveDatagram(batch.Slot(i)[..batch.Lengths[i]], address, now);
                if (inner <= 0) continue;
                // The decrypted packet sits after the transport header, in place.
                batch.Offsets[i] = Messages.TransportHeaderSize;
                batch.Lengths[i] = inner;
                deliver[delivered++] = i;
            }
            // All packets of the batch go to the TUN together, so that segments of a flow can merge.
            if (delivered > 0)
            {
                var refused = _tun.WriteBatch(batch, deliver[..delivered]);
                for (var r = 0; r < refused; r++) Counters.Drop(DropReason.TunWriteFailed);
            }
        }
    }

    /// <summary>
    /// Handles one datagram from the socket (it may be decrypted in place). Returns the length of
    /// an IP packet to hand to the TUN, which then starts right after the transport header; 0 if
    /// there is nothing to deliver.
    /// </summary>
    /// <param name="relayed">The relay endpoint it came through; null for the UDP socket.</param>
    internal int ReceiveDatagram(Span<byte> datagram, ReadOnlySpan<byte> sourceAddress, long now, Endpoint? relayed = null)
    {
        switch (Messages.TypeOf(datagram))
        {
            case Messages.TypeTransport:
                return ReceiveTransport(datagram, sourceAddress, now, relayed);
            case Messages.TypeInitiation or Messages.TypeResponse:
                ReceiveHandshake(datagram, sourceAddress, relayed);
                return 0;
            case Messages.TypeCookieReply:
                ReceiveCookieReply(datagram);
                return 0;
            default:
                var source = relayed ?? Endpoint.FromSockaddr(sourceAddress);
                if (source is null || OtherPacketHandler is null || !OtherPacketHandler(datagram.ToArray(), source))
                    Counters.Drop(datagram.Length == 0 ? DropReason.Malformed : DropReason.NotWireGuard);
                return 0;
        }
    }

    private int ReceiveTransport(Span<byte> datagram, ReadOnlySpan<byte> sourceAddress, long now, Endpoint? relayed)
    {
        if (datagram.Length < Messages.KeepaliveSize) return Dropped(DropReason.Malformed);
        if (!Indices.TryGet(Messages.ReadIndex(datagram, Messages.TransportReceiver), out var entry) || entry.Keypair is not { } keypair)
            return Dropped(DropReason.UnknownIndex);
        var counter = BinaryPrimitives.ReadUInt64LittleEndian(datagram[Messages.TransportCounter..]);
        if (keypair.IsDisposed || keypair.AgeMs(now) >= Timings.RejectAfterTime.TotalMilliseconds || counter >= Constants.RejectAfterMessages)
            return Dropped(DropReason.ExpiredKeypair);

        var ciphertext = datagram[Messages.TransportHeaderSize..];
        var plaintext = ciphertext[..^Messages.TagSize];
        bool opened;
        try
        {
            opened = keypair.Open(counter, ciphertext, plaintext);
        }
        catch (ObjectDisposedException)
        {
            opened = false;
        }
        if (!opened) return Dropped(DropReason.BadAuthentication);
        // Only an authenticated packet may move the replay window.
        if (!keypair.Replay.Accept(counter)) return Dropped(DropReason.Replayed);

        var peer = keypair.Peer;
        if (peer.ReceivedWithKeypair(keypair)) peer.Signals.KeypairConfirmed(peer);
        var endpoint = peer.Endpoint;
        if (endpoint is null)
        {
            peer.Endpoint = relayed ?? Endpoint.FromSockaddr(sourceAddress);
        }
        else if (!peer.PathManaged && relayed is null && !endpoint.Matches(sourceAddress))
        {
            // Roaming: the endpoint follows authenticated packets (a PathFinder's peer moves only by disco).
            if (Endpoint.FromSockaddr(sourceAddress) is { } roamed) peer.Endpoint = roamed;
        }
        else if (relayed is not null && endpoint.IsRelay && endpoint.RelayPeer != relayed.RelayPeer && relayed.RelayPeer == peer.PublicKey)
        {
            // A peer that rotated its key now sends through its relay connection under the new key.
            peer.PathSignals.RelayedUnder(peer, relayed.RelayPeer);
        }
        peer.OnAuthenticatedReceived(now, datagram.Length);
        if (keypair.IsInitiator && keypair.AgeMs(now) > Timings.LastMinuteHandshakeAge.TotalMilliseconds &&
            Interlocked.Exchange(ref keypair.SentLastMinuteHandshake, 1) == 0)
        {
            peer.RequestHandshake();
        }

        if (plaintext.IsEmpty) return 0; // keepalive

        if (!TryReadInner(plaintext, out var source, out var length)) return Dropped(DropReason.InvalidInnerPacket);
        if (AllowedIps.Lookup(source) != peer) return Dropped(DropReason.DisallowedSource);
        if (_filter is { } filter && (!IpPacket.TryRead(plaintext[..length], out var inbound) || !filter.AllowsInbound(inbound, Flows, now)))
            return Dropped(DropReason.FilterDenied);
        peer.OnDataReceived(now);
        if (_pinger is { } pinger && pinger.TryTakeReply(plaintext[..length], peer)) return 0;
        return length;
    }

    private int Dropped(DropReason reason)
    {
        Counters.Drop(reason);
        return 0;
    }

    /// <summary>
    /// On the receive thread, a handshake message only has its size checked and is queued: the mac
    /// checks, cookie replies and rate limits run on the handshake thread, so a flood of handshakes
    /// (valid mac1 or not) costs the receive path a copy each and never starves transport packets.
    /// A full queue drops the message, as wireguard-go does.
    /// </summary>
    private void ReceiveHandshake(Span<byte> datagram, ReadOnlySpan<byte> sourceAddress, Endpoint? relayed)
    {
        var type = Messages.TypeOf(datagram);
        var expected = type == Messages.TypeInitiation ? Messages.InitiationSize : Messages.ResponseSize;
        if (datagram.Length != expected || PrivateKey is null)
        {
            Counters.Drop(DropReason.Malformed);
            return;
        }
        var source = relayed ?? Endpoint.FromSockaddr(sourceAddress);
        if (source is null)
        {
            Counters.Drop(DropReason.Malformed);
            return;
        }
        if (!_handshakeInbox.TryAdd(new HandshakePacket(type, datagram.ToArray(), source)))
            Counters.Drop(DropReason.HandshakeQueueFull);
    }

    /// <summary>The handshake thread: waits for queued handshake messages and checks each.</summary>
    private void RunHandshakeChecker()
    {
        while (!_stopping)
        {
            if (_handshakeInbox.TryTake(out var packet, 200)) CheckHandshake(packet, Clock.NowMs);
        }
    }

    /// <summary>Checks whatever is queued now, on the caller's thread (tests and the fuzzer, which run no threads).</summary>
    internal void CheckQueuedHandshakes()
    {
        while (_handshakeInbox.TryTake(out var packet)) CheckHandshake(packet, Clock.NowMs);
    }

    /// <summary>mac1; under load, mac2 (else a cookie reply) and the per-source rate limit; then the handshake actors.</summary>
    private void CheckHandshake(HandshakePacket packet, long now)
    {
        if (!Cookies.CheckMac1(packet.Message, packet.Type))
        {
            Counters.Drop(DropReason.BadMac1);
            return;
        }
        if (IsUnderLoad(now))
        {
            if (!Cookies.CheckMac2(packet.Message, packet.Type, packet.Source.Address))
            {
                // Counted before the reply goes out, so whoever sees the reply also sees the count.
                Counters.Drop(DropReason.CookieRequired);
                SendCookieReply(packet.Message, packet.Type, packet.Source);
                return;
            }
            if (!RateLimiter.Allow(packet.Source.Address.Address))
            {
                Counters.Drop(DropReason.RateLimited);
                return;
            }
        }
        var handoff = _handshakeHandoff;
        if (handoff is null || Interlocked.Increment(ref handoff.Backlog) > Constants.HandshakeQueueSize)
        {
            if (handoff is not null) Interlocked.Decrement(ref handoff.Backlog);
            Counters.Drop(DropReason.HandshakeQueueFull);
            return;
        }
        packet.Handoff = handoff;
        handoff.Sink(packet);
    }

    private void ReceiveCookieReply(Span<byte> datagram)
    {
        if (datagram.Length != Messages.CookieReplySize)
        {
            Counters.Drop(DropReason.Malformed);
            return;
        }
        if (!Indices.TryGet(Messages.ReadIndex(datagram, Messages.CookieReceiver), out var entry) ||
            !entry.Peer.Cookies.ConsumeReply(datagram, Clock.NowMs))
        {
            Counters.Drop(DropReason.UnexpectedHandshake);
        }
    }
}
