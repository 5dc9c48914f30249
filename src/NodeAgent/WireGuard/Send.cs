using System.Buffers.Binary;
using Weft.NodeAgent.Filter;
using Weft.NodeAgent.Net;

namespace Weft.NodeAgent.WireGuard;

// TUN → UDP: the outbound packet path (wireguard-go send.go).
public sealed partial class WireGuardDevice
{
    private void RunTunReader()
    {
        var slotSize = Math.Max(2048, TransportHeadroom + LargestMtu + Constants.PaddingMultiple + Messages.TagSize);
        using var batch = new PacketBatch(BatchSize, slotSize);
        Span<int> ready = stackalloc int[BatchSize];
        while (!_stopping)
        {
            var count = _tun.ReadBatch(batch, TransportHeadroom, 200);
            if (count < 0) return;
            if (count == 0) continue;

            var now = Clock.NowMs;
            var toSend = 0;
            for (var i = 0; i < count; i++)
            {
                if (SealForSend(batch, i, now)) ready[toSend++] = i;
            }
            if (toSend > 0) _udp.Send(batch, ready[..toSend]);
        }
    }

    /// <summary>Turns the IP packet in slot <paramref name="i"/> into a transport message in place. False if it is not sent now.</summary>
    private bool SealForSend(PacketBatch batch, int i, long now)
    {
        var packet = batch.Packet(i);
        var destination = DestinationOf(packet);
        if (destination.IsEmpty)
        {
            Counters.Drop(DropReason.InvalidInnerPacket);
            return false;
        }
        var peer = AllowedIps.Lookup(destination);
        if (peer is null)
        {
            Counters.Drop(DropReason.NoRoute);
            return false;
        }
        // With a filter in force, remember the flows we open so that their answers may come back in.
        if (_filter is not null && IpPacket.TryRead(packet, out var outbound)) Flows.Track(outbound, now);
        var endpoint = peer.Endpoint;
        if (endpoint is null)
        {
            Counters.Drop(DropReason.NoEndpoint);
            return false;
        }
        var pathMtu = PathMtuOf(peer);
        if (packet.Length > pathMtu)
        {
            SendTooBig(peer, packet, pathMtu, now);
            return false;
        }
        var keypair = peer.Current;
        if (keypair is null || !keypair.CanSend(now, Timings))
        {
            StageForHandshake(peer, packet, now);
            return false;
        }

        var length = packet.Length;
        var padded = Messages.PaddedLength(length, pathMtu);
        var slot = batch.Slot(i);
        slot.Slice(TransportHeadroom + length, padded - length).Clear();
        if (!Seal(keypair, slot[..(TransportHeadroom + padded + Messages.TagSize)], padded))
        {
            peer.Stage(packet);
            peer.RequestHandshake();
            return false;
        }

        batch.Offsets[i] = 0;
        batch.Lengths[i] = TransportHeadroom + padded + Messages.TagSize;
        // Marked before the packet leaves, as in SendTransport: an answer must find the mark to clear.
        peer.OnAuthenticatedSent(now, batch.Lengths[i]);
        peer.OnDataSent(now);
        CheckRekeyAfterSend(peer, keypair, now);
        if (endpoint.IsRelay)
        {
            // Relayed packets leave through the relay connection at once, not in the socket batch.
            SendDatagram(endpoint, batch.Packet(i));
            return false;
        }
        endpoint.Sockaddr.CopyTo(batch.Address(i));
        batch.AddressLengths[i] = endpoint.Sockaddr.Length;
        return true;
    }

    /// <summary>
    /// Sends one IP packet that originates in the agent itself (<c>weft-agent ping</c>) as if it had
    /// been read from the TUN: routed by allowed IPs, tracked for the filter, staged if no session
    /// exists yet. False if no peer routes its destination.
    /// </summary>
    public bool SendLocalPacket(ReadOnlySpan<byte> packet)
    {
        var destination = DestinationOf(packet);
        if (destination.IsEmpty || AllowedIps.Lookup(destination) is not { } peer || peer.Endpoint is null) return false;
        var now = Clock.NowMs;
        if (_filter is not null && IpPacket.TryRead(packet, out var outbound)) Flows.Track(outbound, now);
        var pathMtu = PathMtuOf(peer);
        if (packet.Length > pathMtu) SendTooBig(peer, packet, pathMtu, now);
        else SendOrStage(peer, packet, now);
        return true;
    }

    /// <summary>
    /// The largest inner packet the peer's path carries: what its PathFinder proved, else the
    /// configured MTU (which is also the TUN's, unless probing raised it for another peer).
    /// </summary>
    public int PathMtuOf(Peer peer) => peer.PathMtu is var proven and > 0 ? Math.Min(proven, Mtu) : Math.Min(BaseMtu, Mtu);

    private void SendOrStage(Peer peer, ReadOnlySpan<byte> packet, long now)
    {
        if (!SendTransport(peer, packet)) StageForHandshake(peer, packet, now);
    }

    /// <summary>Keeps a packet until a session exists, and asks for a handshake unless one went out within REKEY_TIMEOUT.</summary>
    private void StageForHandshake(Peer peer, ReadOnlySpan<byte> packet, long now)
    {
        peer.Stage(packet);
        if (now - peer.LastHandshakeSent >= Timings.RekeyTimeout.TotalMilliseconds) peer.RequestHandshake();
    }

    /// <summary>
    /// A packet bigger than the peer's path carries: what a router would do with it. IPv6, or IPv4
    /// with DF, gets an ICMP "too big" naming the path MTU, written back into the TUN; IPv4 without DF
    /// goes out as fragments.
    /// </summary>
    private void SendTooBig(Peer peer, ReadOnlySpan<byte> packet, int pathMtu, long now)
    {
        if (TooBig.MayNotFragment(packet))
        {
            Counters.Drop(DropReason.TooBig);
            if (TooBig.Answer(packet, pathMtu) is { } answer && !_tun.Write(answer)) Counters.Drop(DropReason.TunWriteFailed);
            return;
        }
        var fragments = TooBig.FragmentV4(packet, pathMtu);
        if (fragments.Count == 0) Counters.Drop(DropReason.InvalidInnerPacket);
        foreach (var fragment in fragments) SendOrStage(peer, fragment, now);
    }

    /// <summary>The destination address bytes of an IPv4 or IPv6 packet, or empty if it is neither.</summary>
    internal static ReadOnlySpan<byte> DestinationOf(ReadOnlySpan<byte> packet)
    {
        if (packet.Length >= 20 && packet[0] >> 4 == 4) return packet.Slice(16, 4);
        if (packet.Length >= 40 && packet[0] >> 4 == 6) return packet.Slice(24, 16);
        return default;
    }

    /// <summary>The source address and true length of an IPv4 or IPv6 packet (receivers trust the inner header, not the padding).</summary>
    internal static bool TryReadInner(ReadOnlySpan<byte> packet, out ReadOnlySpan<byte> source, out int length)
    {
        source = default;
        length = 0;
        if (packet.Length >= 20 && packet[0] >> 4 == 4)
        {
            length = BinaryPrimitives.ReadUInt16BigEndian(packet[2..]);
            if (length < 20 || length > packet.Length) return false;
            source = packet.Slice(12, 4);
            return true;
        }
        if (packet.Length >= 40 && packet[0] >> 4 == 6)
        {
            length = BinaryPrimitives.ReadUInt16BigEndian(packet[4..]) + 40;
            if (length > packet.Length) return false;
            source = packet.Slice(8, 16);
            return true;
        }
        return false;
    }
}
