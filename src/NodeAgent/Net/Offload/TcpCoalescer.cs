using System.Buffers.Binary;

namespace Weft.NodeAgent.Net.Offload;

/// <summary>
/// Inbound offload (GRO): consecutive in-order TCP segments of one flow, from one receive batch,
/// become one large packet for the TUN, so the host's TCP stack handles one packet instead of
/// dozens. The rules follow the kernel's own GRO: same addresses, ports and ACK; same header
/// shape and options; only ACK or ACK|PSH flags; PSH only at the end; every segment but the last
/// of the same size; each segment's checksum valid (the merged packet is marked as needing no
/// further check). Packets are not copied: a merged group is written with one writev.
/// </summary>
public sealed class TcpCoalescer
{
    public const int MaxPacketLength = 65535;
    private const int TcpFlagsOffset = 13;
    private const byte TcpAck = 0x10, TcpPsh = 0x08;

    private readonly List<Group> _groups = new();
    private readonly Stack<Group> _spare = new();

    /// <summary>A packet to write: a head (carrying the headers) and the slots whose payloads follow it.</summary>
    public sealed class Group
    {
        public int Head;
        public List<int> Followers = null!;
        public int HeadersLength;
        public int IpHeaderLength;
        public int SegmentSize;
        public int TotalLength;
        public uint NextSequence;
        public bool Closed;
        public bool IsV6;
        public bool HeadChecksumVerified;
        public bool Mergeable;
    }

    public IReadOnlyList<Group> Groups => _groups;

    /// <summary>Groups the given slots (decrypted IP packets) for writing, in arrival order.</summary>
    public void Plan(PacketBatch batch, ReadOnlySpan<int> slots)
    {
        // Groups are reused batch after batch: the packet path allocates nothing.
        foreach (var group in _groups) _spare.Push(group);
        _groups.Clear();

        foreach (var slot in slots)
        {
            var packet = batch.Packet(slot);
            if (!TryParse(packet, out var isV6, out var ipLength, out var tcpLength, out var payload, out var push))
            {
                _groups.Add(NewGroup(slot, mergeable: false));
                continue;
            }
            var target = FindAppendTarget(batch, packet, isV6, ipLength, tcpLength, payload);
            if (target is not null && Append(batch, target, slot, packet, payload, push)) continue;

            var group = NewGroup(slot, mergeable: true);
            group.IsV6 = isV6;
            group.IpHeaderLength = ipLength;
            group.HeadersLength = ipLength + tcpLength;
            group.SegmentSize = payload;
            group.TotalLength = packet.Length;
            group.NextSequence = BinaryPrimitives.ReadUInt32BigEndian(packet[(ipLength + 4)..]) + (uint)payload;
            group.Closed = push;
            _groups.Add(group);
        }
    }

    /// <summary>
    /// Rewrites a merged group's head headers for the whole packet (lengths, IPv4 checksum, the TCP
    /// pseudo-header sum) and returns its virtio_net_hdr. Single packets get an all-zero header.
    /// </summary>
    public static VirtioNetHeader Finish(PacketBatch batch, Group group)
    {
        if (group.Followers.Count == 0) return default;
        var head = batch.Packet(group.Head);
        var ip = head[..group.IpHeaderLength];
        if (!group.IsV6)
        {
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)group.TotalLength);
            InternetChecksum.WriteIpv4HeaderChecksum(ip);
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(group.TotalLength - group.IpHeaderLength));
        }
        // CHECKSUM_PARTIAL: the field holds the pseudo-header sum; the kernel treats the data as verified.
        var addresses = group.IsV6 ? ip.Slice(8, 32) : ip.Slice(12, 8);
        var half = addresses.Length / 2;
        var pseudo = InternetChecksum.PseudoHeader(addresses[..half], addresses[half..], 6, group.TotalLength - group.IpHeaderLength);
        BinaryPrimitives.WriteUInt16BigEndian(head[(group.IpHeaderLength + 16)..], InternetChecksum.Fold(pseudo));
        return new VirtioNetHeader
        {
            Flags = VirtioNetHeader.FlagNeedsChecksum,
            GsoType = group.IsV6 ? VirtioNetHeader.GsoTcpV6 : VirtioNetHeader.GsoTcpV4,
            HeaderLength = (ushort)group.HeadersLength,
            GsoSize = (ushort)group.SegmentSize,
            ChecksumStart = (ushort)group.IpHeaderLength,
            ChecksumOffset = 16,
        };
    }

    private Group NewGroup(int slot, bool mergeable)
    {
        var group = _spare.Count > 0 ? _spare.Pop() : new Group { Followers = new List<int>(8) };
        group.Followers.Clear();
        group.Head = slot;
        group.Mergeable = mergeable;
        group.Closed = !mergeable;
        group.HeadChecksumVerified = false;
        group.IsV6 = false;
        group.HeadersLength = group.IpHeaderLength = group.SegmentSize = group.TotalLength = 0;
        group.NextSequence = 0;
        return group;
    }

    private Group? FindAppendTarget(PacketBatch batch, ReadOnlySpan<byte> packet, bool isV6, int ipLength, int tcpLength, int payload)
    {
        for (var i = _groups.Count - 1; i >= 0; i--)
        {
            var group = _groups[i];
            if (!group.Mergeable || group.IsV6 != isV6 || group.HeadersLength != ipLength + tcpLength) continue;
            var head = batch.Packet(group.Head);
            if (!SameFlow(head, packet, isV6, ipLength)) continue;
            // Newest matching flow only: once a later group of the flow exists, earlier ones are done.
            if (group.Closed || payload > group.SegmentSize) return null;
            if (BinaryPrimitives.ReadUInt32BigEndian(packet[(ipLength + 4)..]) != group.NextSequence) return null;
            if (group.TotalLength + payload > MaxPacketLength) return null;
            if (!head.Slice(ipLength + 20, tcpLength - 20).SequenceEqual(packet.Slice(ipLength + 20, tcpLength - 20))) return null; // options
            return SameIpShape(head, packet, isV6) ? group : null;
        }
        return null;
    }

    private static bool Append(PacketBatch batch, Group group, int slot, ReadOnlySpan<byte> packet, int payload, bool push)
    {
        var head = batch.Packet(group.Head);
        if (!group.HeadChecksumVerified)
        {
            if (!ChecksumValid(head, group.IsV6, group.IpHeaderLength)) { group.Mergeable = false; group.Closed = true; return false; }
            group.HeadChecksumVerified = true;
        }
        if (!ChecksumValid(packet, group.IsV6, group.IpHeaderLength)) return false;

        group.Followers.Add(slot);
        group.TotalLength += payload;
        group.NextSequence += (uint)payload;
        // A shorter segment, or PSH, ends the group.
        if (payload < group.SegmentSize) group.Closed = true;
        if (push)
        {
            head[group.IpHeaderLength + TcpFlagsOffset] |= TcpPsh;
            group.Closed = true;
        }
        return true;
    }

    /// <summary>IPv4 without options and not fragmented, or IPv6 without extension headers, carrying TCP with data and only ACK (or ACK|PSH).</summary>
    private static bool TryParse(ReadOnlySpan<byte> packet, out bool isV6, out int ipLength, out int tcpLength, out int payload, out bool push)
    {
        isV6 = false; ipLength = tcpLength = payload = 0; push = false;
        if (packet.Length >= 40 && packet[0] == 0x45)
        {
            if (packet[9] != 6 || BinaryPrimitives.ReadUInt16BigEndian(packet[2..]) != packet.Length) return false;
            if ((packet[6] & 0x3f) != 0 || packet[7] != 0) return false; // MF or a fragment offset
            ipLength = 20;
        }
        else if (packet.Length >= 60 && packet[0] >> 4 == 6)
        {
            if (packet[6] != 6 || BinaryPrimitives.ReadUInt16BigEndian(packet[4..]) != packet.Length - 40) return false;
            isV6 = true;
            ipLength = 40;
        }
        else
        {
            return false;
        }
        tcpLength = (packet[ipLength + 12] >> 4) * 4;
        if (tcpLength < 20 || ipLength + tcpLength > packet.Length) return false;
        var flags = packet[ipLength + TcpFlagsOffset];
        if (flags != TcpAck && flags != (TcpAck | TcpPsh)) return false;
        push = flags != TcpAck;
        payload = packet.Length - ipLength - tcpLength;
        return payload > 0;
    }

    private static bool SameFlow(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, bool isV6, int ipLength)
    {
        var addresses = isV6 ? a.Slice(8, 32) : a.Slice(12, 8);
        var other = isV6 ? b.Slice(8, 32) : b.Slice(12, 8);
        return addresses.SequenceEqual(other)
               && a.Slice(ipLength, 4).SequenceEqual(b.Slice(ipLength, 4))        // ports
               && a.Slice(ipLength + 8, 4).SequenceEqual(b.Slice(ipLength + 8, 4)); // acknowledgement number
    }

    private static bool SameIpShape(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, bool isV6) =>
        isV6
            ? a[0] == b[0] && a[1] >> 4 == b[1] >> 4 && a[7] == b[7]       // traffic class, hop limit
            : a[1] == b[1] && a[6] >> 5 == b[6] >> 5 && a[8] == b[8];      // TOS, DF/reserved, TTL

    private static bool ChecksumValid(ReadOnlySpan<byte> packet, bool isV6, int ipLength)
    {
        var addresses = isV6 ? packet.Slice(8, 32) : packet.Slice(12, 8);
        var half = addresses.Length / 2;
        var sum = InternetChecksum.PseudoHeader(addresses[..half], addresses[half..], 6, packet.Length - ipLength);
        return InternetChecksum.Fold(InternetChecksum.Add(packet[ipLength..], sum)) == 0xffff;
    }
}
