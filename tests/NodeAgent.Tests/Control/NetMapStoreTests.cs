using Google.Protobuf;
using Weft.Contracts.Control;
using Weft.NodeAgent.Control;

namespace Weft.NodeAgent.Tests.Control;

public class NetMapStoreTests
{
    private static Node Peer(string id, params string[] endpoints) => new() { Id = id, Name = id, Endpoints = { endpoints }, Addresses = { "100.64.0.9" } };

    private static NetMapStore WithMap(ulong version, params Node[] peers)
    {
        var store = new NetMapStore();
        Assert.Equal(NetMapApplied.Replaced, store.Apply(new NetMap { Version = version, Self = new Node { Id = "self", Status = "active" }, Peers = { peers } }));
        return store;
    }

    [Fact]
    public void A_delta_that_continues_the_version_is_applied_field_by_field()
    {
        var store = WithMap(10, Peer("a", "198.18.0.1:1"), Peer("b"));

        var outcome = store.Apply(new NetMapDelta
        {
            BaseVersion = 10,
            Version = 11,
            Patches = { new PeerPatch { Id = "a", Online = true, NodeKey = ByteString.CopyFrom(new byte[32]) } },
            PeersRemoved = { "b" },
            PeersAdded = { Peer("c", "198.18.0.3:3") },
        });

        Assert.Equal(NetMapApplied.Patched, outcome);
        Assert.Equal(11ul, store.Version);
        var view = store.View;
        Assert.Equal(["a", "c"], view.Peers.Keys);
        Assert.True(view.Peers["a"].Online);
        Assert.Equal(["198.18.0.1:1"], view.Peers["a"].Endpoints); // absent fields stay
        Assert.Equal(32, view.Peers["a"].NodeKey.Length);
    }

    [Fact]
    public void A_delta_of_patches_alone_names_the_peers_it_touched_and_anything_more_touches_everything()
    {
        var store = WithMap(10, Peer("a", "198.18.0.1:1"), Peer("b"), Peer("c"));
        Assert.False(store.LastTouch.PeersOnly);

        store.Apply(new NetMapDelta { BaseVersion = 10, Version = 11, Patches = { new PeerPatch { Id = "a", Endpoints = new EndpointList { Endpoints = { "198.18.0.1:2" } } }, new PeerPatch { Id = "c", Online = true } } });
        Assert.True(store.LastTouch.PeersOnly);
        Assert.Equal(["a", "c"], store.LastTouch.PatchedPeers.ToArray());

        NetMapDelta Next(Action<NetMapDelta> shape)
        {
            var delta = new NetMapDelta { BaseVersion = store.Version, Version = store.Version + 1 };
            shape(delta);
            return delta;
        }
        foreach (var whole in new Action<NetMapDelta>[]
                 {
                     d => d.Patches.Add(new PeerPatch { Id = "a", KeyExpiry = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(DateTimeOffset.UnixEpoch) }),
                     d => d.PeersAdded.Add(Peer("d")),
                     d => d.PeersRemoved.Add("d"),
                     d => d.PeersChanged.Add(Peer("b", "198.18.0.2:1")),
                     d => d.Filter = new PacketFilter(),
                     d => d.Dns = new DnsConfig(),
                     d => d.Self = new Node { Id = "self", Status = "active" },
                 })
        {
            var delta = Next(whole);
            Assert.Equal(NetMapApplied.Patched, store.Apply(delta));
            Assert.False(store.LastTouch.PeersOnly, delta.ToString());
            store.Apply(Next(d => d.Patches.Add(new PeerPatch { Id = "b", Online = false })));
            Assert.Equal(["b"], store.LastTouch.PatchedPeers.ToArray());
        }
        store.Apply(new NetMap { Version = 100, Self = new Node { Id = "self" }, Peers = { Peer("a") } });
        Assert.False(store.LastTouch.PeersOnly);
    }

    [Fact]
    public void A_view_taken_before_a_patch_keeps_what_it_showed()
    {
        var store = WithMap(1, Peer("a", "198.18.0.1:1"), Peer("b", "198.18.0.2:1"));
        var before = store.View;
        store.Apply(new NetMapDelta { BaseVersion = 1, Version = 2, Patches = { new PeerPatch { Id = "a", Endpoints = new EndpointList { Endpoints = { "198.18.0.1:9" } } } } });
        store.Apply(new NetMapDelta { BaseVersion = 2, Version = 3, PeersRemoved = { "b" } });

        Assert.Equal(["198.18.0.1:1"], before.Peers["a"].Endpoints);
        Assert.Equal(["a", "b"], before.Peers.Keys);
        Assert.Equal(["198.18.0.1:9"], store.View.Peers["a"].Endpoints);
        Assert.Equal(["a"], store.View.Peers.Keys);
        Assert.Same(store.View, store.View);
    }

    [Fact]
    public void A_store_that_keeps_less_of_each_peer_applies_every_change_to_what_it_keeps()
    {
        static Node IdAndEndpoints(Node peer) => new() { Id = peer.Id, Endpoints = { peer.Endpoints }, EndpointsVersion = peer.EndpointsVersion };
        var store = new NetMapStore(IdAndEndpoints);
        store.Apply(new NetMap { Version = 1, Self = new Node { Id = "self" }, Peers = { Peer("a", "198.18.0.1:1"), Peer("b", "198.18.0.2:1") } });
        store.Apply(new NetMapDelta
        {
            BaseVersion = 1, Version = 2, PeersAdded = { Peer("c", "198.18.0.3:1") }, PeersRemoved = { "b" },
            Patches = { new PeerPatch { Id = "a", Online = true, EndpointsVersion = 7, Endpoints = new EndpointList { Endpoints = { "198.18.0.1:2" } } } },
        });

        Assert.Equal(["a", "c"], store.View.Peers.Keys);
        var a = store.View.Peers["a"];
        Assert.Equal((7L, "", false), (a.EndpointsVersion, a.Name, a.Online)); // the patch applied; what is not kept stays out
        Assert.Equal(["198.18.0.1:2"], a.Endpoints);
        Assert.Empty(store.View.Peers["c"].Addresses);
        Assert.Equal(["198.18.0.3:1"], store.View.Peers["c"].Endpoints);
    }

    [Fact]
    public void A_peer_whose_endpoints_the_coordinator_does_not_know_keeps_the_ones_held()
    {
        var held = Peer("a", "198.18.0.1:5");
        held.HomeRelay = 3;
        held.DiscoKey = ByteString.CopyFrom(new byte[32]);
        var store = WithMap(1, held, Peer("b", "198.18.0.2:1"));
        Node Unknown(string id) => new() { Id = id, Name = id + "-renamed", Addresses = { "100.64.0.9" }, EndpointsUnknown = true };

        // A full map from a restarted coordinator: a and b unknown, c new to this agent.
        store.Apply(new NetMap { Version = 2, Self = new Node { Id = "self" }, Peers = { Unknown("a"), Unknown("b"), Unknown("c") } });
        var a = store.View.Peers["a"];
        Assert.Equal(("a-renamed", 3, 32, false), (a.Name, a.HomeRelay, a.DiscoKey.Length, a.EndpointsUnknown));
        Assert.Equal(["198.18.0.1:5"], a.Endpoints);
        Assert.Equal(["198.18.0.2:1"], store.View.Peers["b"].Endpoints);
        Assert.Empty(store.View.Peers["c"].Endpoints);
        Assert.True(store.View.Peers["c"].EndpointsUnknown);

        // A whole-node change keeps them too; once known again, the node's own endpoints win.
        store.Apply(new NetMapDelta { BaseVersion = 2, Version = 3, PeersChanged = { Unknown("b") } });
        Assert.Equal(["198.18.0.2:1"], store.View.Peers["b"].Endpoints);
        store.Apply(new NetMapDelta { BaseVersion = 3, Version = 4, PeersChanged = { Peer("b", "198.18.0.2:9") } });
        Assert.Equal(["198.18.0.2:9"], store.View.Peers["b"].Endpoints);
    }

    [Fact]
    public void Endpoints_older_than_or_as_old_as_the_held_ones_are_not_taken()
    {
        var held = Peer("a", "198.18.0.1:6");
        held.EndpointsVersion = 600;
        var store = WithMap(1, held);
        PeerPatch Patch(int port, long version) => new() { Id = "a", Endpoints = new EndpointList { Endpoints = { $"198.18.0.1:{port}" } }, HomeRelay = 2, EndpointsVersion = version, Online = true };

        // A late report (older version) changes nothing of the endpoints; the rest of the patch applies.
        store.Apply(new NetMapDelta { BaseVersion = 1, Version = 2, Patches = { Patch(5, 500) } });
        var a = store.View.Peers["a"];
        Assert.Equal(["198.18.0.1:6"], a.Endpoints);
        Assert.Equal((0, 600L, true), (a.HomeRelay, a.EndpointsVersion, a.Online));

        // A whole node at an older version keeps the held endpoints too; a newer patch replaces them.
        var older = Peer("a", "198.18.0.1:4");
        older.EndpointsVersion = 400;
        store.Apply(new NetMapDelta { BaseVersion = 2, Version = 3, PeersChanged = { older } });
        Assert.Equal(["198.18.0.1:6"], store.View.Peers["a"].Endpoints);
        store.Apply(new NetMapDelta { BaseVersion = 3, Version = 4, Patches = { Patch(7, 700) } });
        a = store.View.Peers["a"];
        Assert.Equal(["198.18.0.1:7"], a.Endpoints);
        Assert.Equal((2, 700L), (a.HomeRelay, a.EndpointsVersion));

        // Older by any amount: a late report (versions are the agent's own stamps, so no clock skew explains it).
        store.Apply(new NetMapDelta { BaseVersion = 4, Version = 5, Patches = { Patch(8, 1) } });
        Assert.Equal(["198.18.0.1:7"], store.View.Peers["a"].Endpoints);
    }

    [Fact]
    public void An_empty_endpoint_list_in_a_patch_clears_the_endpoints()
    {
        var store = WithMap(1, Peer("a", "198.18.0.1:1"));

        store.Apply(new NetMapDelta { BaseVersion = 1, Version = 2, Patches = { new PeerPatch { Id = "a", Endpoints = new EndpointList() } } });

        Assert.Empty(store.View.Peers["a"].Endpoints);
    }

    [Fact]
    public void A_delta_from_another_base_is_a_gap_and_changes_nothing()
    {
        var store = WithMap(10, Peer("a"));
        var before = store.View;

        Assert.Equal(NetMapApplied.Gap, store.Apply(new NetMapDelta { BaseVersion = 11, Version = 12, PeersRemoved = { "a" } }));
        Assert.Same(before, store.View);
        Assert.Equal(10ul, store.Version);
    }

    [Fact]
    public void A_patch_for_a_peer_the_agent_does_not_hold_is_a_gap_and_changes_nothing()
    {
        var store = WithMap(10, Peer("a"));

        var outcome = store.Apply(new NetMapDelta { BaseVersion = 10, Version = 11, PeersRemoved = { "a" }, Patches = { new PeerPatch { Id = "ghost", Online = true } } });

        Assert.Equal(NetMapApplied.Gap, outcome);
        Assert.Equal(["a"], store.View.Peers.Keys);
    }

    [Fact]
    public void A_delta_already_applied_is_stale_and_ignored()
    {
        var store = WithMap(10, Peer("a"));
        var delta = new NetMapDelta { BaseVersion = 10, Version = 11, PeersRemoved = { "a" } };
        store.Apply(delta);

        Assert.Equal(NetMapApplied.Stale, store.Apply(delta));
        Assert.Equal(11ul, store.Version);
    }

    [Fact]
    public void Before_any_full_map_every_delta_is_a_gap()
    {
        Assert.Equal(NetMapApplied.Gap, new NetMapStore().Apply(new NetMapDelta { BaseVersion = 0, Version = 1 }));
    }

    [Fact]
    public void A_full_map_replaces_everything()
    {
        var store = WithMap(10, Peer("a"), Peer("b"));

        store.Apply(new NetMap { Version = 20, Self = new Node { Id = "self" }, Peers = { Peer("z") }, Coordinators = { "http://198.18.0.1:7650/" } });

        Assert.Equal(["z"], store.View.Peers.Keys);
        Assert.Equal(20ul, store.View.Version);
        Assert.Equal(["http://198.18.0.1:7650/"], store.View.Coordinators.ToArray());
    }
}
