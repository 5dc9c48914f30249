using System.Buffers.Binary;

namespace Weft.NodeAgent.Net.Offload;

/// <summary>
/// Outbound offload: the kernel hands the TUN one large TCP packet (up to 64 KiB) with a
/// virtio_net_hdr asking for segmentation; we cut it into MSS-sized packets, each with its own IP
/// and TCP headers and complete checksums, before encrypting them. Also completes the partial
/// checksum of unsegmented packets. Each segment becomes a normal WireGuard packet on the wire.
/// </summary>
public static class TcpSegmentation
{
    private const int TcpFlagsOffset = 13;
    private const byte TcpFin = 0x01, TcpPsh = 0x08;

    /// <summary>Completes a partial checksum in place (VIRTIO_NET_HDR_F_NEEDS_CSUM without GSO). False if the offsets are out of range.</summary>
    public static bool CompleteChecksum(Span<byte> packet, in VirtioNetHeader header)
    {
        int start = header.ChecksumStart, at = header.ChecksumStart + header.ChecksumOffset;
        if (start >= packet.Length || at + 2 > packet.Length) return false;
        // The field holds the pseudo-header sum; it is part of what gets summed.
        var initial = InternetChecksum.FromNetwork(BinaryPrimitives.ReadUInt16BigEndian(packet[at..]));
        packet.Slice(at, 2).Clear();
        BinaryPrimitives.WriteUInt16BigEndian(packet[at..], InternetChecksum.Complete(InternetChecksum.Add(packet[start..], initial)));
        return true;
    }

    /// <summary>How many segments <paramref name="packet"/> splits into.</summary>
    public static int SegmentCount(ReadOnlySpan<byte> packet, in VirtioNetHeader header) =>
        header.GsoSize == 0 || packet.Length <= header.HeaderLength ? 0 : (packet.Length - header.HeaderLength + header.GsoSize - 1) / header.GsoSize;

    /// <summary>
    /// Writes segment <paramref name="index"/> of a TSO packet into <paramref name="destination"/>
    /// and returns its length (0 if the packet is malformed).
    /// </summary>
    public static int WriteSegment(ReadOnlySpan<byte> packet, in VirtioNetHeader header, int index, Span<byte> destination)
    {
        int ipLength = header.ChecksumStart, headersLength = header.HeaderLength, mss = header.GsoSize;
        var isV4 = header.GsoType == VirtioNetHeader.GsoTcpV4;
        if (ipLength < (isV4 ? 20 : 40) || headersLength < ipLength + 20 || headersLength > packet.Length || header.ChecksumOffset != 16) return 0;

        var dataStart = headersLength + index * mss;
        if (dataStart >= packet.Length) return 0;
        var dataLength = Math.Min(mss, packet.Length - dataStart);
        var total = headersLength + dataLength;
        if (total > destination.Length) return 0;
        var last = dataStart + dataLength == packet.Length;

        packet[..headersLength].CopyTo(destination);
        packet.Slice(dataStart, dataLength).CopyTo(destination[headersLength..]);
        var ip = destination[..ipLength];
        if (isV4)
        {
            // IPv4: our job to give each segment its own ID, length and header checksum.
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(BinaryPrimitives.ReadUInt16BigEndian(ip[4..]) + index));
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)total);
            InternetChecksum.WriteIpv4HeaderChecksum(ip);
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(total - ipLength));
        }

        var tcp = destination[ipLength..total];
        var sequence = BinaryPrimitives.ReadUInt32BigEndian(packet[(ipLength + 4)..]) + (uint)(index * mss);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], sequence);
        if (!last) tcp[TcpFlagsOffset] &= unchecked((byte)~(TcpFin | TcpPsh)); // FIN and PSH belong to the last segment only
        tcp.Slice(16, 2).Clear();
        var addresses = isV4 ? ip.Slice(12, 8) : ip.Slice(8, 32);
        var half = addresses.Length / 2;
        var sum = InternetChecksum.PseudoHeader(addresses[..half], addresses[half..], 6, tcp.Length);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], InternetChecksum.Complete(InternetChecksum.Add(tcp, sum)));
        return total;
    }
}
