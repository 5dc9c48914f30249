using Weft.NodeAgent.Tests.Support;

namespace Weft.NodeAgent.Tests.WireGuard;

/// <summary>
/// Every tunnel of a device runs on a few packet loops (TUN read, UDP receive, handshake check). One that
/// meets an unexpected failure is started again; before, it ended and the device passed no more traffic
/// in that direction, with nothing to bring it back.
/// </summary>
public sealed class PacketLoopRecoveryTests : Akka.TestKit.Xunit2.TestKit
{
    [Fact]
    public void A_packet_loop_that_throws_is_started_again_and_traffic_flows_after_it()
    {
        FaultyTun? faulty = null;
        using var a = new EngineNode(Sys, "a", wrapTun: tun => faulty = new FaultyTun(tun));
        using var b = new EngineNode(Sys, "b");
        a.Trust(b, "100.64.0.2/32");
        b.Trust(a, "100.64.0.1/32");
        var warmUp = TestPackets.Ipv4("100.64.0.1", "100.64.0.2");
        a.Tun.Inject(warmUp);
        Assert.Equal(warmUp, b.Receive());

        // a's TUN read loop (its outbound traffic) throws.
        faulty!.FailNextRead(new IOException("the test's TUN read failure"));
        Assert.True(faulty.ReadFailed.Wait(TimeSpan.FromSeconds(10)), "the TUN read loop never read again");
        var outbound = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: 1);
        a.Tun.Inject(outbound);
        Assert.Equal(outbound, b.Receive());

        // a's UDP receive loop (its inbound traffic) throws while handing a decrypted packet to the TUN.
        faulty.FailNextWrite(new IOException("the test's TUN write failure"));
        b.Tun.Inject(TestPackets.Ipv4("100.64.0.2", "100.64.0.1", fill: 2));
        Assert.True(faulty.WriteFailed.Wait(TimeSpan.FromSeconds(10)), "the packet never reached a's TUN");
        var inbound = TestPackets.Ipv4("100.64.0.2", "100.64.0.1", fill: 3);
        b.Tun.Inject(inbound);
        Assert.Equal(inbound, a.Receive());

        Assert.Equal(2, a.Device.Counters.LoopRestarts);
        Assert.Equal(0, b.Device.Counters.LoopRestarts);
    }
}
