using System.Buffers.Binary;
using Weft.NodeAgent.Net.Offload;

namespace Weft.NodeAgent.Net;

/// <summary>
/// What a router does with a packet too big for the next hop, done by the engine at the TUN for a
/// peer whose path carries less than the TUN's MTU: an IPv6 packet, or an IPv4 packet with Don't
/// Fragment set, is answered with an ICMP "too big" naming the MTU (RFC 1191, RFC 8201), so that the
/// sender's stack lowers its path MTU instead of losing packets silently; an IPv4 packet without DF
/// is cut into fragments (RFC 791) that the far host reassembles.
/// </summary>
public static class TooBig
{
    /// <summary>RFC 1812: an ICMPv4 error quotes as much of the packet as fits in 576 bytes.</summary>
    private const int IcmpV4MaxSize = 576;
    /// <summary>RFC 4443: an ICMPv6 error quotes as much as fits in the minimum IPv6 MTU.</summary>
    private const int IcmpV6MaxSize = 1280;
    private const byte ProtocolIcmpV4 = 1;
    private const byte ProtocolIcmpV6 = 58;

    /// <summary>True for a packet that must not be fragmented on its way: IPv6, or IPv4 with DF.</summary>
    public static bool MayNotFragment(ReadOnlySpan<byte> packet) =>
        packet.Length >= 1 && (packet[0] >> 4 == 6 || (packet.Length >= 20 && (packet[6] & 0x40) != 0));

    /// <summary>
    /// The ICMP "fragmentation needed" (IPv4) or "packet too big" (IPv6) answer to <paramref name="packet"/>,
    /// from its destination back to its source, or null when no error may be sent for it: an ICMP
    /// error itself, a fragment other than the first, or a source that is not a unicast address.
    /// </summary>
    public static byte[]? Answer(ReadOnlySpan<byte> packet, int mtu)
    {
        if (packet.Length >= 20 && packet[0] >> 4 == 4) return AnswerV4(packet, mtu);
        if (packet.Length >= 40 && packet[0] >> 4 == 6) return AnswerV6(packet, mtu);
        return null;
    }

    private static byte[]? AnswerV4(ReadOnlySpan<byte> packet, int mtu)
    {
        var headerLength = (packet[0] & 0x0f) * 4;
        if (headerLength < 20 || packet.Length < headerLength) return null;
        var fragmentOffset = BinaryPrimitives.ReadUInt16BigEndian(packet[6..]) & 0x1fff;
        if (fragmentOffset != 0) return null;
        var source = packet.Slice(12, 4);
        if (source[0] == 0 || source[0] >= 224 || source[0] == 127) return null;
        if (packet[9] == ProtocolIcmpV4 && packet.Length > headerLength && IsIcmpV4Error(packet[headerLength])) return null;

        var quoted = Math.Min(packet.Length, IcmpV4MaxSize - 20 - 8);
        var answer = new byte[20 + 8 + quoted];
        answer[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(answer.AsSpan(2), (ushort)answer.Length);
        answer[8] = 64; // TTL
        answer[9] = ProtocolIcmpV4;
        packet.Slice(16, 4).CopyTo(answer.AsSpan(12)); // from the destination the packet could not reach
        source.CopyTo(answer.AsSpan(16));
        InternetChecksum.WriteIpv4HeaderChecksum(answer.AsSpan(0, 20));
        var icmp = answer.AsSpan(20);
        icmp[0] = 3; // destination unreachable
        icmp[1] = 4; // fragmentation needed and DF set
        BinaryPrimitives.WriteUInt16BigEndian(icmp[6..], (ushort)Math.Min(mtu, ushort.MaxValue));
        packet[..quoted].CopyTo(icmp[8..]);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Complete(InternetChecksum.Add(icmp)));
        return answer;
    }

    private static byte[]? AnswerV6(ReadOnlySpan<byte> packet, int mtu)
    {
        var source = packet.Slice(8, 16);
        if (source[0] == 0xff || source.IndexOfAnyExcept((byte)0) < 0) return null;
        if (packet[6] == ProtocolIcmpV6 && packet.Length > 40 && packet[40] < 128) return null; // an ICMPv6 error
        if (mtu < IcmpV6MaxSize) mtu = IcmpV6MaxSize;

        var quoted = Math.Min(packet.Length, IcmpV6MaxSize - 40 - 8);
        var answer = new byte[40 + 8 + quoted];
        answer[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(answer.AsSpan(4), (ushort)(8 + quoted));
        answer[6] = ProtocolIcmpV6;
        answer[7] = 64; // hop limit
        packet.Slice(24, 16).CopyTo(answer.AsSpan(8));
        source.CopyTo(answer.AsSpan(24));
        var icmp = answer.AsSpan(40);
        icmp[0] = 2; // packet too big
        BinaryPrimitives.WriteUInt32BigEndian(icmp[4..], (uint)mtu);
        packet[..quoted].CopyTo(icmp[8..]);
        var sum = InternetChecksum.PseudoHeader(answer.AsSpan(8, 16), answer.AsSpan(24, 16), ProtocolIcmpV6, icmp.Length);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Complete(InternetChecksum.Add(icmp, sum)));
        return answer;
    }

    private static bool IsIcmpV4Error(byte type) => type is 3 or 4 or 5 or 11 or 12;

    /// <summary>
    /// Cuts an IPv4 packet (DF clear) into fragments of at most <paramref name="mtu"/> bytes, each
    /// with the whole header (options included), its offset and More Fragments set on all but the
    /// last (and on the last too if the packet was itself a fragment that was not the last). Empty if
    /// the packet is not a well-formed IPv4 packet.
    /// </summary>
    public static List<byte[]> FragmentV4(ReadOnlySpan<byte> packet, int mtu)
    {
        var fragments = new List<byte[]>();
        if (packet.Length < 20 || packet[0] >> 4 != 4) return fragments;
        var headerLength = (packet[0] & 0x0f) * 4;
        var totalLength = BinaryPrimitives.ReadUInt16BigEndian(packet[2..]);
        if (headerLength < 20 || totalLength < headerLength || totalLength > packet.Length) return fragments;
        var header = packet[..headerLength];
        var payload = packet[headerLength..totalLength];
        var flags = BinaryPrimitives.ReadUInt16BigEndian(packet[6..]);
        var firstOffset = (flags & 0x1fff) * 8;
        var moreAfter = (flags & 0x2000) != 0;
        var chunk = (mtu - headerLength) / 8 * 8;
        if (chunk <= 0) return fragments;

        for (var at = 0; at < payload.Length; at += chunk)
        {
            var size = Math.Min(chunk, payload.Length - at);
            var last = at + size >= payload.Length;
            var fragment = new byte[headerLength + size];
            header.CopyTo(fragment);
            payload.Slice(at, size).CopyTo(fragment.AsSpan(headerLength));
            BinaryPrimitives.WriteUInt16BigEndian(fragment.AsSpan(2), (ushort)fragment.Length);
            var offsetField = (firstOffset + at) / 8 | (last && !moreAfter ? 0 : 0x2000);
            BinaryPrimitives.WriteUInt16BigEndian(fragment.AsSpan(6), (ushort)offsetField);
            InternetChecksum.WriteIpv4HeaderChecksum(fragment.AsSpan(0, headerLength));
            fragments.Add(fragment);
        }
        return fragments;
    }
}
