using System.Buffers.Binary;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Offload;
using Weft.NodeAgent.Tests.Support;

namespace Weft.NodeAgent.Tests.Net;

/// <summary>The router's answers to a packet too big for the path: ICMP "too big", or IPv4 fragments.</summary>
public class TooBigTests
{
    private static byte[] WithDontFragment(byte[] packet)
    {
        packet[6] |= 0x40;
        packet[10] = packet[11] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), InternetChecksum.Complete(InternetChecksum.Add(packet.AsSpan(0, 20))));
        return packet;
    }

    [Fact]
    public void An_ipv4_packet_with_df_is_answered_from_its_destination_with_fragmentation_needed_and_the_mtu()
    {
        var packet = WithDontFragment(TestPackets.Ipv4("100.64.0.1", "100.64.0.2", payloadLength: 1400));

        var answer = TooBig.Answer(packet, 1340)!;

        Assert.Equal(0x45, answer[0]);
        Assert.Equal(answer.Length, BinaryPrimitives.ReadUInt16BigEndian(answer.AsSpan(2)));
        Assert.True(answer.Length <= 576, "an ICMPv4 error fits in 576 bytes");
        Assert.Equal(1, answer[9]);
        Assert.Equal(packet.AsSpan(16, 4).ToArray(), answer.AsSpan(12, 4).ToArray()); // from where the packet was going
        Assert.Equal(packet.AsSpan(12, 4).ToArray(), answer.AsSpan(16, 4).ToArray()); // to whoever sent it
        Assert.Equal(0, InternetChecksum.Fold(InternetChecksum.Add(answer.AsSpan(0, 20))) ^ 0xffff);
        var icmp = answer.AsSpan(20);
        Assert.Equal(3, icmp[0]);
        Assert.Equal(4, icmp[1]);
        Assert.Equal(1340, BinaryPrimitives.ReadUInt16BigEndian(icmp[6..]));
        Assert.Equal(0, InternetChecksum.Fold(InternetChecksum.Add(icmp)) ^ 0xffff);
        Assert.Equal(packet.AsSpan(0, icmp.Length - 8).ToArray(), icmp[8..].ToArray()); // the packet's start, quoted
    }

    [Fact]
    public void An_ipv6_packet_is_answered_with_packet_too_big_whose_checksum_covers_the_pseudo_header()
    {
        var packet = TestPackets.Ipv6("fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2", payloadLength: 1400);

        var answer = TooBig.Answer(packet, 1340)!;

        Assert.Equal(0x60, answer[0]);
        Assert.Equal(58, answer[6]);
        Assert.True(answer.Length <= 1280, "an ICMPv6 error fits in the minimum MTU");
        Assert.Equal(answer.Length - 40, BinaryPrimitives.ReadUInt16BigEndian(answer.AsSpan(4)));
        Assert.Equal(packet.AsSpan(24, 16).ToArray(), answer.AsSpan(8, 16).ToArray());
        Assert.Equal(packet.AsSpan(8, 16).ToArray(), answer.AsSpan(24, 16).ToArray());
        var icmp = answer.AsSpan(40);
        Assert.Equal(2, icmp[0]);
        Assert.Equal(1340u, BinaryPrimitives.ReadUInt32BigEndian(icmp[4..]));
        var sum = InternetChecksum.PseudoHeader(answer.AsSpan(8, 16), answer.AsSpan(24, 16), 58, icmp.Length);
        Assert.Equal(0, InternetChecksum.Fold(InternetChecksum.Add(icmp, sum)) ^ 0xffff);
    }

    [Fact]
    public void No_answer_goes_to_an_icmp_error_a_later_fragment_or_a_source_that_is_not_unicast()
    {
        var icmpError = WithDontFragment(TestPackets.Ipv4("100.64.0.1", "100.64.0.2", TestPackets.Icmp, payloadLength: 1400));
        icmpError[20] = 3;
        Assert.Null(TooBig.Answer(icmpError, 1340));

        var laterFragment = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", payloadLength: 1400);
        BinaryPrimitives.WriteUInt16BigEndian(laterFragment.AsSpan(6), 0x4000 | 100);
        Assert.Null(TooBig.Answer(laterFragment, 1340));

        Assert.Null(TooBig.Answer(TestPackets.Ipv4("224.0.0.1", "100.64.0.2", payloadLength: 1400), 1340));
        Assert.Null(TooBig.Answer(TestPackets.Ipv6("::", "fd7a:115c:a1e0::2", payloadLength: 1400), 1340));
        var icmpV6Error = TestPackets.Ipv6("fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2", 58, payloadLength: 1400);
        icmpV6Error[40] = 1;
        Assert.Null(TooBig.Answer(icmpV6Error, 1340));
        Assert.Null(TooBig.Answer([0x45, 0, 0], 1340));

        // An echo request is not an error: it is answered.
        var echo = WithDontFragment(TestPackets.Ipv4("100.64.0.1", "100.64.0.2", TestPackets.Icmp, payloadLength: 1400));
        echo[20] = 8;
        Assert.NotNull(TooBig.Answer(echo, 1340));
    }

    [Fact]
    public void Only_ipv4_without_df_may_be_fragmented()
    {
        Assert.False(TooBig.MayNotFragment(TestPackets.Ipv4("100.64.0.1", "100.64.0.2")));
        Assert.True(TooBig.MayNotFragment(WithDontFragment(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"))));
        Assert.True(TooBig.MayNotFragment(TestPackets.Ipv6("fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2")));
    }

    [Theory]
    [InlineData(1400, 1340)]
    [InlineData(1400, 1280)]
    [InlineData(3000, 576)]
    [InlineData(1341, 1340)]
    public void Fragments_fit_the_mtu_carry_valid_headers_and_reassemble_to_the_original(int payload, int mtu)
    {
        var packet = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", payloadLength: payload);
        for (var i = 20; i < packet.Length; i++) packet[i] = (byte)i;

        var fragments = TooBig.FragmentV4(packet, mtu);

        Assert.True(fragments.Count >= 2);
        var reassembled = new byte[payload];
        var covered = 0;
        for (var i = 0; i < fragments.Count; i++)
        {
            var fragment = fragments[i];
            Assert.True(fragment.Length <= mtu);
            Assert.Equal(fragment.Length, BinaryPrimitives.ReadUInt16BigEndian(fragment.AsSpan(2)));
            Assert.Equal(0, InternetChecksum.Fold(InternetChecksum.Add(fragment.AsSpan(0, 20))) ^ 0xffff);
            var field = BinaryPrimitives.ReadUInt16BigEndian(fragment.AsSpan(6));
            Assert.Equal(i < fragments.Count - 1, (field & 0x2000) != 0);
            var offset = (field & 0x1fff) * 8;
            Assert.Equal(covered, offset);
            fragment.AsSpan(20).CopyTo(reassembled.AsSpan(offset));
            covered += fragment.Length - 20;
        }
        Assert.Equal(payload, covered);
        Assert.Equal(packet.AsSpan(20).ToArray(), reassembled);
    }

    [Fact]
    public void A_fragment_cut_again_keeps_its_offset_and_its_more_fragments_flag()
    {
        var packet = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", payloadLength: 1400);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(6), 0x2000 | 185); // offset 1480, more to come

        var fragments = TooBig.FragmentV4(packet, 1000);

        Assert.Equal(185, BinaryPrimitives.ReadUInt16BigEndian(fragments[0].AsSpan(6)) & 0x1fff);
        Assert.All(fragments, f => Assert.True((BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(6)) & 0x2000) != 0));
        Assert.Empty(TooBig.FragmentV4([0x45, 0, 0], 1000));
        Assert.Empty(TooBig.FragmentV4(TestPackets.Ipv6("fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2"), 1000));
    }
}
