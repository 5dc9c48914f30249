using System.Buffers.Binary;
using System.Net;
using FsCheck.Xunit;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Offload;

namespace Weft.NodeAgent.Tests.Net;

/// <summary>TUN offloads: splitting the host's large TCP packets, and merging received segments back.</summary>
public class OffloadTests
{
    /// <summary>RFC 1071, written the slow obvious way, to check the fast one against.</summary>
    private static ushort NaiveChecksum(ReadOnlySpan<byte> data, uint initial = 0)
    {
        uint sum = initial;
        for (var i = 0; i < data.Length; i += 2)
            sum += (uint)(data[i] << 8 | (i + 1 < data.Length ? data[i + 1] : 0));
        while (sum >> 16 != 0) sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }

    private static byte[] Pseudo(ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination, int length)
    {
        var pseudo = new byte[source.Length * 2 + 4];
        source.CopyTo(pseudo);
        destination.CopyTo(pseudo.AsSpan(source.Length));
        pseudo[^3] = 6;
        BinaryPrimitives.WriteUInt16BigEndian(pseudo.AsSpan(pseudo.Length - 2), (ushort)length);
        return pseudo;
    }

    private static bool TcpChecksumOk(ReadOnlySpan<byte> packet, bool v6)
    {
        var ip = v6 ? 40 : 20;
        var tcp = packet[ip..];
        var pseudo = Pseudo(packet.Slice(v6 ? 8 : 12, v6 ? 16 : 4), packet.Slice(v6 ? 24 : 16, v6 ? 16 : 4), tcp.Length);
        return NaiveChecksum([.. pseudo, .. tcp]) == 0;
    }

    /// <summary>A TCP packet with valid checksums, like those the peer's host would send.</summary>
    private static byte[] TcpPacket(uint sequence, int payload, byte flags = 0x10, byte fill = 0x5a, bool v6 = false, ushort ipId = 100)
    {
        var ip = v6 ? 40 : 20;
        var packet = new byte[ip + 20 + payload];
        if (v6)
        {
            packet[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)(20 + payload));
            packet[6] = 6;
            packet[7] = 64;
            IPAddress.Parse("fd7a:115c:a1e0::1").TryWriteBytes(packet.AsSpan(8), out _);
            IPAddress.Parse("fd7a:115c:a1e0::2").TryWriteBytes(packet.AsSpan(24), out _);
        }
        else
        {
            packet[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), ipId);
            packet[6] = 0x40; // DF
            packet[8] = 64;
            packet[9] = 6;
            IPAddress.Parse("100.64.0.1").TryWriteBytes(packet.AsSpan(12), out _);
            IPAddress.Parse("100.64.0.2").TryWriteBytes(packet.AsSpan(16), out _);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), NaiveChecksum(packet.AsSpan(0, 20)));
        }
        var tcp = packet.AsSpan(ip);
        BinaryPrimitives.WriteUInt16BigEndian(tcp, 40000);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], 5201);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], sequence);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], 777);
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 65000);
        for (var i = 0; i < payload; i++) tcp[20 + i] = (byte)(fill + sequence + i);
        var pseudo = Pseudo(packet.AsSpan(v6 ? 8 : 12, v6 ? 16 : 4), packet.AsSpan(v6 ? 24 : 16, v6 ? 16 : 4), tcp.Length);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], NaiveChecksum([.. pseudo, .. tcp.ToArray()]));
        return packet;
    }

    [Property]
    public bool The_fast_checksum_matches_rfc_1071(byte[] data)
    {
        data ??= [];
        return InternetChecksum.Complete(InternetChecksum.Add(data)) == NaiveChecksum(data);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_tso_packet_splits_into_mss_segments_with_valid_headers(bool v6)
    {
        // What the kernel hands a TUN with TSO on: one packet, the TCP checksum field holding the pseudo-header sum.
        const int mss = 1380, payload = 3 * mss + 500;
        var big = TcpPacket(1000, payload, flags: 0x18 /* PSH|ACK */, v6: v6);
        var ip = v6 ? 40 : 20;
        var header = new VirtioNetHeader
        {
            Flags = VirtioNetHeader.FlagNeedsChecksum,
            GsoType = v6 ? VirtioNetHeader.GsoTcpV6 : VirtioNetHeader.GsoTcpV4,
            HeaderLength = (ushort)(ip + 20),
            GsoSize = mss,
            ChecksumStart = (ushort)ip,
            ChecksumOffset = 16,
        };

        Assert.Equal(4, TcpSegmentation.SegmentCount(big, header));
        var reassembled = new List<byte>();
        for (var i = 0; i < 4; i++)
        {
            var segment = new byte[2048];
            var length = TcpSegmentation.WriteSegment(big, header, i, segment);
            var packet = segment.AsSpan(0, length);
            Assert.Equal(ip + 20 + (i < 3 ? mss : 500), length);
            Assert.True(TcpChecksumOk(packet, v6), $"segment {i} TCP checksum");
            if (!v6)
            {
                Assert.Equal(0, NaiveChecksum(packet[..20]));
                Assert.Equal(length, BinaryPrimitives.ReadUInt16BigEndian(packet[2..]));
                Assert.Equal(100 + i, BinaryPrimitives.ReadUInt16BigEndian(packet[4..]));
            }
            Assert.Equal((uint)(1000 + i * mss), BinaryPrimitives.ReadUInt32BigEndian(packet[(ip + 4)..]));
            Assert.Equal(i == 3 ? 0x18 : 0x10, packet[ip + 13]); // PSH only on the last segment
            reassembled.AddRange(packet[(ip + 20)..].ToArray());
        }
        Assert.Equal(big.AsSpan(ip + 20).ToArray(), reassembled.ToArray());
    }

    [Fact]
    public void A_partial_checksum_is_completed()
    {
        var packet = TcpPacket(5, 300);
        // The kernel leaves the pseudo-header sum in the field and asks us to finish.
        var pseudo = Pseudo(packet.AsSpan(12, 4), packet.AsSpan(16, 4), packet.Length - 20);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(36), (ushort)~NaiveChecksum(pseudo));
        var header = new VirtioNetHeader { Flags = VirtioNetHeader.FlagNeedsChecksum, ChecksumStart = 20, ChecksumOffset = 16 };

        Assert.True(TcpSegmentation.CompleteChecksum(packet, header));

        Assert.True(TcpChecksumOk(packet, false));
    }

    private static (PacketBatch Batch, int[] Slots) BatchOf(params byte[][] packets)
    {
        var batch = new PacketBatch(64, 2048);
        for (var i = 0; i < packets.Length; i++)
        {
            packets[i].CopyTo(batch.Slot(i)[16..]);
            batch.Offsets[i] = 16;
            batch.Lengths[i] = packets[i].Length;
        }
        return (batch, Enumerable.Range(0, packets.Length).ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void In_order_segments_of_one_flow_merge_into_one_packet(bool v6)
    {
        var segments = Enumerable.Range(0, 5).Select(i => TcpPacket((uint)(1000 + i * 1000), 1000, flags: i == 4 ? (byte)0x18 : (byte)0x10, v6: v6)).ToArray();
        var (batch, slots) = BatchOf(segments);
        using var _ = batch;
        var coalescer = new TcpCoalescer();

        coalescer.Plan(batch, slots);

        var group = Assert.Single(coalescer.Groups);
        Assert.Equal([1, 2, 3, 4], group.Followers);
        var header = TcpCoalescer.Finish(batch, group);
        var ip = v6 ? 40 : 20;
        Assert.Equal(v6 ? VirtioNetHeader.GsoTcpV6 : VirtioNetHeader.GsoTcpV4, header.GsoType);
        Assert.Equal(1000, header.GsoSize);
        Assert.Equal(ip + 20, header.HeaderLength);
        var head = batch.Packet(0);
        Assert.Equal(0x18, head[ip + 13]); // the merged packet carries the final PSH
        if (!v6)
        {
            Assert.Equal(ip + 20 + 5000, BinaryPrimitives.ReadUInt16BigEndian(head[2..]));
            Assert.Equal(0, NaiveChecksum(head[..20]));
        }
        else
        {
            Assert.Equal(20 + 5000, BinaryPrimitives.ReadUInt16BigEndian(head[4..]));
        }
    }

    [Fact]
    public void Segments_that_cannot_merge_stay_separate()
    {
        var corrupt = TcpPacket(3000, 1000);
        corrupt[^1] ^= 0xff;
        var (batch, slots) = BatchOf(
            TcpPacket(1000, 1000),
            TcpPacket(2000, 1000, flags: 0x18),   // PSH ends the group
            TcpPacket(3000, 1000),                // would follow, but the group is closed
            TcpPacket(9000, 1000),                // a gap in sequence
            corrupt,                              // bad checksum: never merged
            TcpPacket(20000, 1000),
            TcpPacket(21000, 500),                // a shorter segment may end a group...
            TcpPacket(21500, 500));               // ...but nothing may follow it
        using var _ = batch;
        var coalescer = new TcpCoalescer();

        coalescer.Plan(batch, slots);

        Assert.Equal([[1], [], [], [], [6], []], coalescer.Groups.Select(g => g.Followers.ToArray()).ToArray());
        Assert.Equal([0, 2, 3, 4, 5, 7], coalescer.Groups.Select(g => g.Head));
    }

    [Fact]
    public void Non_tcp_packets_pass_through_untouched()
    {
        var udp = Weft.NodeAgent.Tests.Support.TestPackets.Ipv4("100.64.0.1", "100.64.0.2");
        var (batch, slots) = BatchOf(udp, udp);
        using var _ = batch;
        var coalescer = new TcpCoalescer();

        coalescer.Plan(batch, slots);

        Assert.Equal(2, coalescer.Groups.Count);
        Assert.All(coalescer.Groups, g => Assert.Equal(default, TcpCoalescer.Finish(batch, g)));
        Assert.Equal(udp, batch.Packet(0).ToArray());
    }
}
