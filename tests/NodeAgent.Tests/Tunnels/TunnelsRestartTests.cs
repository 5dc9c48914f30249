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
/// The tunnels' actor restarts after a failure, and the message it failed on is lost: the data plane
/// tells it its key and its mesh again, instead of leaving the engine as the failure left it until the
/// next netmap change (hours, in a quiet tailnet).
/// </summary>
public sealed class TunnelsRestartTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task After_the_tunnels_restart_the_engine_holds_the_whole_mesh_and_the_node_key_again_whatever_the_failure_cut_short()
    {
        using var device = new WireGuardDevice(new VirtualTun("restart0"), UdpTransport.Bind(0));
        var control = CreateTestProbe();
        var plane = Sys.ActorOf(DataPlane.PropsFor(new DataPlaneOptions { Device = device, Link = new NoTunnelLink(), DiscoverEndpoints = false }, control.Ref));
        await control.FishForMessageAsync<WatchControl>(watch => watch.Watcher.Equals(plane), Limit);
        using var self = Curve25519PrivateKey.Generate();
        var (first, second) = (Curve25519PrivateKey.Generate().PublicKey, Curve25519PrivateKey.Generate().PublicKey);
        var view = NetMapView.Empty with
        {
            Version = 1,
            TailnetId = "tn_restart",
            Self = new Node { Id = "self", Name = "self", Addresses = { "100.64.0.1/32" } },
            Peers = ImmutableSortedDictionary<string, Node>.Empty.Add("first", Peer("first", first, 2)).Add("second", Peer("second", second, 3)),
        };
        plane.Tell(new NodeKeyChanged(self.ToHex(), Rotated: false));
        plane.Tell(new ControlStateChanged(ControlState.Running, null, "connected"));
        plane.Tell(new NetMapChanged(view, NetMapApplied.Replaced));
        await AwaitConditionAsync(() => Task.FromResult(device.Peers.ContainsKey(first) && device.Peers.ContainsKey(second)), Limit);

        // The tunnels fail halfway through a change: a peer removed from the engine and the one replacing it
        // never added, and the old identity's key in place (a rotation cut short). Then they restart.
        device.RemovePeer(device.Peers[second]);
        device.SetPrivateKey(Curve25519PrivateKey.Generate());
        var tunnels = await Sys.ActorSelection(plane.Path / "tunnels").ResolveOne(Limit);
        tunnels.Tell(Kill.Instance);

        await AwaitConditionAsync(() => Task.FromResult(device.Peers.ContainsKey(second) && device.PrivateKey?.PublicKey == self.PublicKey), Limit,
            TimeSpan.FromMilliseconds(50), "the engine was left as the failure left it");
        Assert.True(device.Peers.ContainsKey(first));

        // They fail again at once (a message that fails every time would): not told everything again so soon, or the
        // loop would use up their restarts in a moment, then the data plane's, then the agent's. Left as they are.
        device.RemovePeer(device.Peers[second]);
        tunnels.Tell(Kill.Instance);
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.False(device.Peers.ContainsKey(second), "told everything again right after the last time");
        Assert.True(await plane.GracefulStop(Limit));
    }
}
