using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Weft.NodeAgent.Net.Offload;

/// <summary>
/// The Internet checksum (RFC 1071): a ones'-complement sum of 16-bit words. Summed here in the
/// machine's little-endian word order and swapped at the end, which RFC 1071 §2(B) shows is
/// equivalent and lets us add 32 bits at a time.
/// </summary>
public static class InternetChecksum
{
    /// <summary>Adds <paramref name="data"/> to a running sum (little-endian word domain, unfolded).</summary>
    public static ulong Add(ReadOnlySpan<byte> data, ulong sum = 0)
    {
        var words = MemoryMarshal.Cast<byte, uint>(data[..(data.Length & ~3)]);
        foreach (var word in words) sum += word;
        var tail = data[(data.Length & ~3)..];
        if (tail.Length >= 2)
        {
            sum += BinaryPrimitives.ReadUInt16LittleEndian(tail);
            tail = tail[2..];
        }
        if (tail.Length == 1) sum += tail[0];
        return sum;
    }

    /// <summary>Folds a running sum to 16 bits and returns it in network (big-endian) word order, not complemented.</summary>
    public static ushort Fold(ulong sum)
    {
        while (sum >> 16 != 0) sum = (sum & 0xffff) + (sum >> 16);
        return BinaryPrimitives.ReverseEndianness((ushort)sum);
    }

    /// <summary>The checksum to store in a header: the complement of the folded sum.</summary>
    public static ushort Complete(ulong sum) => (ushort)~Fold(sum);

    /// <summary>Converts a big-endian 16-bit value (as read from a header) into the little-endian summing domain.</summary>
    public static ulong FromNetwork(ushort value) => BinaryPrimitives.ReverseEndianness(value);

    /// <summary>Fills in an IPv4 header's checksum (bytes 10-11) over the whole <paramref name="header"/>, options included.</summary>
    public static void WriteIpv4HeaderChecksum(Span<byte> header)
    {
        header.Slice(10, 2).Clear();
        BinaryPrimitives.WriteUInt16BigEndian(header[10..], Complete(Add(header)));
    }

    /// <summary>The TCP/UDP pseudo-header: source, destination, protocol and transport length.</summary>
    public static ulong PseudoHeader(ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination, byte protocol, int transportLength)
    {
        var sum = Add(source);
        sum = Add(destination, sum);
        sum += (ulong)protocol << 8;
        sum += BinaryPrimitives.ReverseEndianness((ushort)transportLength);
        return sum;
    }
}
