using System.Buffers.Binary;
using Weft.NodeAgent.Net.Offload;
using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

/// <summary>
/// A peer whose path carries less than the TUN's MTU: the engine answers its oversized packets as a
/// router would, with an ICMP "too big" into the TUN or with IPv4 fragments, and never drops them silently.
/// </summary>
public sealed class PathMtuTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private readonly EngineNode _a;
    private readonly EngineNode _b;

    public PathMtuTests()
    {
        _a = new EngineNode(Sys, "a");
        _b = new EngineNode(Sys, "b");
        _a.Trust(_b, "100.64.0.2/32", "fd7a:115c:a1e0::2/128");
        _b.Trust(_a, "100.64.0.1/32", "fd7a:115c:a1e0::1/128");
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"));
        _b.Receive();
    }

    [Fact]
    public void A_packet_with_df_over_the_path_mtu_comes_back_as_fragmentation_needed_and_one_that_fits_passes()
    {
        _a.PeerOf(_b).PathMtu = 1300;
        var big = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", payloadLength: 1380);
        big[6] |= 0x40;

        _a.Tun.Inject(big);

        var answer = _a.Receive();
        Assert.Equal((3, 4), (answer[20], answer[21]));
        Assert.Equal(1300, BinaryPrimitives.ReadUInt16BigEndian(answer.AsSpan(26)));
        Assert.Equal(1, _a.Device.Counters[DropReason.TooBig]);
        var fits = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", payloadLength: 1280, fill: 7);
        fits[6] |= 0x40;
        _a.Tun.Inject(fits);
        Assert.Equal(fits, _b.Receive());
        Assert.False(_b.TryReceive(TimeSpan.FromMilliseconds(200), out _), "the oversized packet must not have been sent");
    }

    [Fact]
    public void An_ipv6_packet_over_the_path_mtu_comes_back_as_packet_too_big()
    {
        _a.PeerOf(_b).PathMtu = 1300;

        _a.Tun.Inject(TestPackets.Ipv6("fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2", payloadLength: 1300));

        var answer = _a.Receive();
        Assert.Equal(2, answer[40]);
        Assert.Equal(1300u, BinaryPrimitives.ReadUInt32BigEndian(answer.AsSpan(44)));
    }

    [Fact]
    public void An_ipv4_packet_without_df_over_the_path_mtu_arrives_as_fragments_that_reassemble_to_it()
    {
        _a.PeerOf(_b).PathMtu = 1300;
        var big = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", payloadLength: 1380);
        for (var i = 20; i < big.Length; i++) big[i] = (byte)(i * 7);

        _a.Tun.Inject(big);

        var first = _b.Receive();
        var second = _b.Receive();
        Assert.True(first.Length <= 1300 && second.Length <= 1300);
        Assert.Equal(0x2000, BinaryPrimitives.ReadUInt16BigEndian(first.AsSpan(6)) & 0x2000);
        var secondOffset = (BinaryPrimitives.ReadUInt16BigEndian(second.AsSpan(6)) & 0x1fff) * 8;
        Assert.Equal(first.Length - 20, secondOffset);
        Assert.Equal(big.AsSpan(20).ToArray(), first.AsSpan(20).ToArray().Concat(second.AsSpan(20).ToArray()).ToArray());
        Assert.Equal(0, InternetChecksum.Fold(InternetChecksum.Add(second.AsSpan(0, 20))) ^ 0xffff);
        Assert.False(_a.TryReceive(TimeSpan.FromMilliseconds(200), out _), "no ICMP for a packet that may be fragmented");
    }

    [Fact]
    public void Without_a_proven_path_mtu_the_configured_mtu_is_the_limit_even_after_the_tun_mtu_was_raised()
    {
        Assert.True(_a.Device.SetMtu(WireGuardDevice.MaxMtu));
        Assert.Equal(WireGuardDevice.MaxMtu, _a.Device.Mtu);
        var big = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", payloadLength: _a.Device.BaseMtu);
        big[6] |= 0x40;

        _a.Tun.Inject(big);

        var answer = _a.Receive();
        Assert.Equal(_a.Device.BaseMtu, BinaryPrimitives.ReadUInt16BigEndian(answer.AsSpan(26)));
        _a.PeerOf(_b).PathMtu = WireGuardDevice.MaxMtu;
        _a.Tun.Inject(big);
        Assert.Equal(big, _b.Receive());
        Assert.False(_a.Device.SetMtu(WireGuardDevice.MaxMtu + 1), "the engine's buffers end at MaxMtu");
    }

    public new void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
        base.Dispose();
    }
}
