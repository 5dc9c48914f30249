using System.Collections.Immutable;
using Akka.Actor;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;
using Weft.NodeAgent.Agent;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Tunnels;

/// <summary>
/// The agent expires a peer's key itself once its time has passed, as Tailscale's does: the coordinator
/// marks a lapsed key within its sweep, but an agent running on a cached netmap while no coordinator
/// answers never hears it, and would go on accepting the key for good.
/// </summary>
public sealed class PeerKeyExpiryTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(15);

    private static Node Peer(string id, Curve25519PublicKey key, int host, DateTimeOffset? keyExpiry) => new()
    {
        Id = id,
        Name = id,
        NodeKey = ByteString.CopyFrom(key.ToArray()),
        Addresses = { $"100.64.0.{host}/32" },
        Endpoints = { $"127.0.0.1:{40000 + host}" },
        KeyExpiry = keyExpiry is { } at ? Timestamp.FromDateTimeOffset(at) : null,
    };

    [Fact]
    public async Task A_peer_whose_key_time_has_passed_gets_no_tunnel_and_one_that_lapses_later_loses_its_tunnel_then()
    {
        using var device = new WireGuardDevice(new VirtualTun("expiry0"), UdpTransport.Bind(0));
        var control = CreateTestProbe();
        var plane = Sys.ActorOf(DataPlane.PropsFor(new DataPlaneOptions { Device = device, Link = new NoTunnelLink(), DiscoverEndpoints = false }, control.Ref));
        await control.FishForMessageAsync<WatchControl>(watch => watch.Watcher.Equals(plane), Limit);
        using var self = Curve25519PrivateKey.Generate();
        var (lapsed, soon, tagged) = (Curve25519PrivateKey.Generate().PublicKey, Curve25519PrivateKey.Generate().PublicKey, Curve25519PrivateKey.Generate().PublicKey);
        var now = DateTimeOffset.UtcNow;
        // Not marked expired: the netmap is from before the coordinator's sweep (a cached one, no coordinator answering).
        var view = NetMapView.Empty with
        {
            Version = 1,
            TailnetId = "tn_expiry",
            Self = new Node { Id = "self", Name = "self", Addresses = { "100.64.0.1/32" } },
            Peers = ImmutableSortedDictionary<string, Node>.Empty
                .Add("lapsed", Peer("lapsed", lapsed, 2, now.AddMinutes(-1)))
                .Add("soon", Peer("soon", soon, 3, now.AddSeconds(3)))
                .Add("tagged", Peer("tagged", tagged, 4, null)),
        };

        plane.Tell(new NodeKeyChanged(self.ToHex(), Rotated: false));
        plane.Tell(new ControlStateChanged(ControlState.Connecting, null, "no coordinator answers"));
        plane.Tell(new NetMapChanged(view, NetMapApplied.Replaced));

        await AwaitConditionAsync(() => Task.FromResult(device.Peers.ContainsKey(soon) && device.Peers.ContainsKey(tagged)), Limit, TimeSpan.FromMilliseconds(50));
        Assert.False(device.Peers.ContainsKey(lapsed), "a peer whose key lapsed a minute ago got a tunnel");

        // No new netmap: the data plane's own check takes the peer out once its key's time passes.
        await AwaitConditionAsync(() => Task.FromResult(!device.Peers.ContainsKey(soon)), Limit, TimeSpan.FromMilliseconds(50));
        Assert.True(DateTimeOffset.UtcNow >= now.AddSeconds(3), "the peer left before its key lapsed");
        Assert.True(device.Peers.ContainsKey(tagged), "a key without expiry left with the other");
        Assert.True(await plane.GracefulStop(Limit));
    }
}
