using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

/// <summary>Two engines over real UDP on loopback, each with an in-memory TUN.</summary>
public sealed class EngineToEngineTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private readonly EngineNode _a;
    private readonly EngineNode _b;

    public EngineToEngineTests()
    {
        _a = new EngineNode(Sys, "a");
        _b = new EngineNode(Sys, "b");
        _a.Trust(_b, "100.64.0.2/32", "fd7a:115c:a1e0::2/128");
        _b.Trust(_a, "100.64.0.1/32", "fd7a:115c:a1e0::1/128");
    }

    [Fact]
    public void The_first_packet_triggers_a_handshake_and_arrives()
    {
        var packet = TestPackets.Ipv4("100.64.0.1", "100.64.0.2");

        _a.Tun.Inject(packet);

        Assert.Equal(packet, _b.Receive());
        Assert.NotNull(_a.PeerOf(_b).Current);
        Assert.True(_a.PeerOf(_b).Current!.IsInitiator);
    }

    [Fact]
    public void Traffic_flows_both_ways_over_ipv4_and_ipv6()
    {
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"));
        _b.Receive();

        for (var i = 0; i < 50; i++)
        {
            var v4 = TestPackets.Ipv4("100.64.0.2", "100.64.0.1", payloadLength: 1 + i * 20, fill: (byte)i);
            _b.Tun.Inject(v4);
            Assert.Equal(v4, _a.Receive());
            var v6 = TestPackets.Ipv6("fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2", payloadLength: 1 + i * 20, fill: (byte)i);
            _a.Tun.Inject(v6);
            Assert.Equal(v6, _b.Receive());
        }
        // The responder promoted its keypair on the first packet from the initiator.
        Assert.NotNull(_b.PeerOf(_a).Current);
        Assert.Null(_b.PeerOf(_a).Next);
    }

    [Fact]
    public void A_pre_shared_key_on_both_sides_works_and_a_mismatch_never_completes()
    {
        using var c = new EngineNode(Sys, "c");
        using var d = new EngineNode(Sys, "d");
        var psk = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
        c.Trust(d, psk, "100.64.0.4/32");
        d.Trust(c, psk, "100.64.0.3/32");
        c.Tun.Inject(TestPackets.Ipv4("100.64.0.3", "100.64.0.4"));
        Assert.NotEmpty(d.Receive());

        using var e = new EngineNode(Sys, "e");
        using var f = new EngineNode(Sys, "f");
        e.Trust(f, psk, "100.64.0.6/32");
        f.Trust(e, new byte[32], "100.64.0.5/32");
        e.Tun.Inject(TestPackets.Ipv4("100.64.0.5", "100.64.0.6"));
        // f answers (its key mixes another PSK in), and e cannot open the answer.
        AwaitCondition(() => e.Device.Counters[DropReason.UnexpectedHandshake] >= 1, TimeSpan.FromSeconds(10));
        Assert.False(f.TryReceive(TimeSpan.FromSeconds(1), out _));
        Assert.Null(e.PeerOf(f).Current);
    }

    [Fact]
    public void Packets_to_no_peer_and_from_a_disallowed_source_are_dropped_and_counted()
    {
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.9.9"));
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"));
        _b.Receive();
        Assert.Equal(1, _a.Device.Counters[DropReason.NoRoute]);

        // B claims a source it does not own: A refuses it after decrypting.
        _b.Device.AllowedIps.Insert(IpPrefix.Parse("100.64.0.1/32"), _b.PeerOf(_a));
        _b.Tun.Inject(TestPackets.Ipv4("100.64.0.77", "100.64.0.1"));
        _b.Tun.Inject(TestPackets.Ipv4("100.64.0.2", "100.64.0.1"));
        Assert.Equal("100.64.0.2", new System.Net.IPAddress(_a.Receive().AsSpan(12, 4)).ToString());
        Assert.Equal(1, _a.Device.Counters[DropReason.DisallowedSource]);
    }

    public new void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
        base.Dispose();
    }
}
