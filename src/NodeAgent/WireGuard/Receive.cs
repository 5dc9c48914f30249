using System.Buffers.Binary;
using System.Net.Sockets;
using Weft.NodeAgent.Net;

namespace Weft.NodeAgent.WireGuard;

// UDP → TUN: the inbound packet path (wireguard-go receive.go).
public sealed partial class WireGuardDevice
{
    private void RunUdpReceiver(UdpTransport transport, Socket socket)
    {
        using var batch = new PacketBatch(BatchSize, Math.Max(2048, Mtu + 128));
        while (!_stopping)
        {
            var count = transport.Receive(socket, batch);
            if (count < 0) return;
            if (count == 0) continue;
            var now = Clock.NowMs;
            for (var i = 0; i < count; i++)
            {
                var address = batch.Address(i)[..batch.AddressLengths[i]];
                ReceiveDatagram(batch.Slot(i)[..batch.Lengths[i]], address, now);
            }
        }
    }

    /// <summary>Handles one datagram from the socket; <paramref name="datagram"/> may be decrypted in place.</summary>
    internal void ReceiveDatagram(Span<byte> datagram, ReadOnlySpan<byte> sourceAddress, long now)
    {
        switch (Messages.TypeOf(datagram))
        {
            case Messages.TypeTransport:
                ReceiveTransport(datagram, sourceAddress, now);
                break;
            case Messages.TypeInitiation or Messages.TypeResponse:
                ReceiveHandshake(datagram, sourceAddress, now);
                break;
            case Messages.TypeCookieReply:
                ReceiveCookieReply(datagram);
                break;
            default:
                var source = Endpoint.FromSockaddr(sourceAddress);
                if (source is null || OtherPacketHandler is null || !OtherPacketHandler(datagram.ToArray(), source))
                    Counters.Drop(datagram.Length == 0 ? DropReason.Malformed : DropReason.NotWireGuard);
                break;
        }
    }

    private void ReceiveTransport(Span<byte> datagram, ReadOnlySpan<byte> sourceAddress, long now)
    {
        if (datagram.Length < Messages.KeepaliveSize)
        {
            Counters.Drop(DropReason.Malformed);
            return;
        }
        if (!Indices.TryGet(Messages.ReadIndex(datagram, Messages.TransportReceiver), out var entry) || entry.Keypair is not { } keypair)
        {
            Counters.Drop(DropReason.UnknownIndex);
            return;
        }
        var counter = BinaryPrimitives.ReadUInt64LittleEndian(datagram[Messages.TransportCounter..]);
        if (keypair.IsDisposed || keypair.AgeMs(now) >= Timings.RejectAfterTime.TotalMilliseconds || counter >= Constants.RejectAfterMessages)
        {
            Counters.Drop(DropReason.ExpiredKeypair);
            return;
        }

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
        if (!opened)
        {
            Counters.Drop(DropReason.BadAuthentication);
            return;
        }
        // Only an authenticated packet may move the replay window.
        if (!keypair.Replay.Accept(counter))
        {
            Counters.Drop(DropReason.Replayed);
            return;
        }

        var peer = keypair.Peer;
        if (peer.ReceivedWithKeypair(keypair)) peer.Signals.KeypairConfirmed(peer);
        var endpoint = peer.Endpoint;
        if (endpoint is null || !endpoint.Matches(sourceAddress))
        {
            // Roaming: the endpoint follows authenticated packets.
            if (Endpoint.FromSockaddr(sourceAddress) is { } roamed) peer.Endpoint = roamed;
        }
        peer.OnAuthenticatedReceived(now, datagram.Length);
        if (keypair.IsInitiator && keypair.AgeMs(now) > Timings.LastMinuteHandshakeAge.TotalMilliseconds &&
            Interlocked.Exchange(ref keypair.SentLastMinuteHandshake, 1) == 0)
        {
            peer.RequestHandshake();
        }

        if (plaintext.IsEmpty) return; // keepalive

        if (!TryReadInner(plaintext, out var source, out var length))
        {
            Counters.Drop(DropReason.InvalidInnerPacket);
            return;
        }
        if (AllowedIps.Lookup(source) != peer)
        {
            Counters.Drop(DropReason.DisallowedSource);
            return;
        }
        peer.OnDataReceived(now);
        if (!_tun.Write(plaintext[..length])) Counters.Drop(DropReason.TunWriteFailed);
    }

    private void ReceiveHandshake(Span<byte> datagram, ReadOnlySpan<byte> sourceAddress, long now)
    {
        var type = Messages.TypeOf(datagram);
        var expected = type == Messages.TypeInitiation ? Messages.InitiationSize : Messages.ResponseSize;
        if (datagram.Length != expected || PrivateKey is null)
        {
            Counters.Drop(DropReason.Malformed);
            return;
        }
        if (!Cookies.CheckMac1(datagram, type))
        {
            Counters.Drop(DropReason.BadMac1);
            return;
        }
        var source = Endpoint.FromSockaddr(sourceAddress);
        if (source is null)
        {
            Counters.Drop(DropReason.Malformed);
            return;
        }
        if (IsUnderLoad(now))
        {
            if (!Cookies.CheckMac2(datagram, type, source.Address))
            {
                SendCookieReply(datagram, type, source);
                Counters.Drop(DropReason.CookieRequired);
                return;
            }
            if (!RateLimiter.Allow(source.Address.Address))
            {
                Counters.Drop(DropReason.RateLimited);
                return;
            }
        }
        var sink = HandshakeSink;
        if (sink is null || Interlocked.Increment(ref _handshakeBacklog) > Constants.HandshakeQueueSize)
        {
            if (sink is not null) Interlocked.Decrement(ref _handshakeBacklog);
            Counters.Drop(DropReason.HandshakeQueueFull);
            return;
        }
        sink(new HandshakePacket(type, datagram.ToArray(), source));
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
