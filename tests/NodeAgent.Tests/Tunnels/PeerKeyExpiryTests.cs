using System.Collections.Immutable;
using Akka.Actor;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;
using Weft.NodeAgent.Agent;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.WireGuard;
using static Weft.NodeAgent.Tests.Support.TestPeers;

namespace Weft.NodeAgent.Tests.Tunnels;

/// <summary>
/// The agent expires a peer's key itself once its time has passed, as Tailscale's does: the coordinator
/// marks a lapsed key within its sweep, but an agent running on a cached netmap while no coordinator
/// answers never hears it, and would go on accepting the key for good.
/// </summary>
public sealed class PeerKeyExpiryTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Without_a_coordinator_a_peer_whose_key_time_has_passed_loses_its_tunnel_and_while_one_serves_its_word_counts()
    {
        using var device = new WireGuardDevice(new VirtualTun("expiry0"), UdpTransport.Bind(0));
        var control = CreateTestProbe();
        var clock = new SteppedClock();
        var plane = Sys.ActorOf(DataPlane.PropsFor(new DataPlaneOptions
        {
            Device = device, Link = new NoTunnelLink(), DiscoverEndpoints = false, Clock = clock, KeyExpiryRecheck = TimeSpan.FromMilliseconds(100),
        }, control.Ref));
        await control.FishForMessageAsync<WatchControl>(watch => watch.Watcher.Equals(plane), Limit);
        using var self = Curve25519PrivateKey.Generate();
        var (lapsed, later, tagged) = (Curve25519PrivateKey.Generate().PublicKey, Curve25519PrivateKey.Generate().PublicKey, Curve25519PrivateKey.Generate().PublicKey);
        var now = clock.GetUtcNow();
        // Not marked expired: the netmap is from before the coordinator's sweep (a cached one, no coordinator answering).
        var view = NetMapView.Empty with
        {
            Version = 1,
            TailnetId = "tn_expiry",
            Self = new Node { Id = "self", Name = "self", Addresses = { "100.64.0.1/32" } },
            Peers = ImmutableSortedDictionary<string, Node>.Empty
                .Add("lapsed", Peer("lapsed", lapsed, 2, now.AddMinutes(-1)))
                .Add("later", Peer("later", later, 3, now.AddHours(1)))
                .Add("tagged", Peer("tagged", tagged, 4, null)),
        };
        Task Holds(params Curve25519PublicKey[] keys) => AwaitConditionAsync(() => Task.FromResult(
            new[] { lapsed, later, tagged }.All(key => device.Peers.ContainsKey(key) == keys.Contains(key))), Limit, TimeSpan.FromMilliseconds(50));

        // A coordinator serves: it marks lapsed keys itself, by its own clock, which this machine's may differ from.
        plane.Tell(new NodeKeyChanged(self.ToHex(), Rotated: false));
        plane.Tell(new ControlStateChanged(ControlState.Running, null, "connected"));
        plane.Tell(new NetMapChanged(view, NetMapApplied.Replaced));
        await Holds(lapsed, later, tagged);

        // No coordinator answers: this machine's clock is all there is, and a lapsed key goes.
        plane.Tell(new ControlStateChanged(ControlState.Connecting, null, "no coordinator answers"));
        await Holds(later, tagged);

        // No new netmap: the data plane's own check takes the next one out once its key's time passes.
        clock.Step(TimeSpan.FromHours(2));
        await Holds(tagged);
        Assert.True(await plane.GracefulStop(Limit));
    }

    /// <summary>The machine's clock, whose wall time the test steps.</summary>
    private sealed class SteppedClock : TimeProvider
    {
        private long _offsetTicks;

        public override DateTimeOffset GetUtcNow() => TimeProvider.System.GetUtcNow() + TimeSpan.FromTicks(Interlocked.Read(ref _offsetTicks));

        public void Step(TimeSpan by) => Interlocked.Add(ref _offsetTicks, by.Ticks);
    }
}
