using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

/// <summary>
/// Peer timers are armed when needed, not polled: an idle session keeps a single timer for its
/// far-off key zeroing, and traffic wakes the tunnel to arm the short ones (here the passive
/// keepalive, shortened to 200 ms). Real clock, real engines over loopback UDP.
/// </summary>
public sealed class TimerWakeTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private static readonly WireGuardTimings Short = WireGuardTimings.Default with
    {
        KeepaliveTimeout = TimeSpan.FromMilliseconds(200),
        RekeyTimeout = TimeSpan.FromMilliseconds(300),
        RekeyAfterTime = TimeSpan.FromSeconds(20),
        RejectAfterTime = TimeSpan.FromSeconds(30),
    };

    private readonly EngineNode _a;
    private readonly EngineNode _b;

    public TimerWakeTests()
    {
        _a = new EngineNode(Sys, "a", timings: Short);
        _b = new EngineNode(Sys, "b", timings: Short);
        _a.Trust(_b, "100.64.0.2/32");
        _b.Trust(_a, "100.64.0.1/32");
    }

    [Fact]
    public void An_idle_session_arms_only_its_far_key_zeroing_timer_and_traffic_wakes_the_short_timers()
    {
        var packet = TestPackets.Ipv4("100.64.0.1", "100.64.0.2");
        _a.Tun.Inject(packet);
        Assert.Equal(packet, _b.Receive());
        var atB = _b.PeerOf(_a);
        var atA = _a.PeerOf(_b);

        // Quiet: b's passive keepalive went out, then both sleep until key zeroing (90 s away).
        AwaitCondition(() => atB.LastAuthenticatedSent > 0 && Far(atA) && Far(atB), TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(20));

        // New data at b wakes its tunnel: the passive keepalive timer (200 ms) is armed and fires.
        var keepaliveBefore = atB.LastAuthenticatedSent;
        _a.Tun.Inject(packet);
        Assert.Equal(packet, _b.Receive());
        AwaitCondition(() => atB.LastAuthenticatedSent > keepaliveBefore, TimeSpan.FromSeconds(3), TimeSpan.FromMilliseconds(20));
        AwaitCondition(() => Far(atB), TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(20));
    }

    /// <summary>Nothing is armed sooner than 60 s from now (the key-zeroing timer is 90 s out).</summary>
    private static bool Far(Peer peer) => peer.TimerArmedAt > EngineClock.System.NowMs + 60_000;

    public new void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
        base.Dispose();
    }
}
