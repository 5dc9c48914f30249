using Google.Protobuf;
using Weft.Contracts.Control;
using Weft.LoadTest.Fleet;
using Weft.NodeAgent.Control;

namespace Weft.LoadTest.Tests;

/// <summary>Thin peer records: only what the checks read, one instance per peer version shared by every store that holds it.</summary>
public sealed class ThinPeersTests
{
    private static Node Full(string endpoint, long version) => new()
    {
        Id = "dev_abc", Name = "host", Fqdn = "host.example.", NodeKey = ByteString.CopyFrom(new byte[32]), Online = true,
        Addresses = { "100.64.0.2", "fd7a:115c:a1e0::2" }, Endpoints = { endpoint }, EndpointsVersion = version, Tags = { "tag:x" },
    };

    [Fact]
    public void A_thin_record_keeps_what_the_checks_read_and_is_shared_while_the_peer_is_the_same()
    {
        var thin = new ThinPeers();
        var first = thin.Of(Full("198.18.0.1:1030", 5));
        Assert.Equal(("dev_abc", 32, 5L, ""), (first.Id, first.NodeKey.Length, first.EndpointsVersion, first.Name));
        Assert.Equal(["198.18.0.1:1030"], first.Endpoints);
        Assert.Empty(first.Addresses);
        Assert.Empty(first.Tags);

        Assert.Same(first, thin.Of(Full("198.18.0.1:1030", 5)));
        var next = thin.Of(Full("198.18.0.1:1031", 6));
        Assert.NotSame(first, next);
        Assert.Same(first.Id, next.Id);
        Assert.Equal(["198.18.0.1:1030"], first.Endpoints); // a shared record never changes
    }

    [Fact]
    public void Two_thin_stores_fed_the_same_netmap_share_their_peer_records_and_each_applies_its_own_patches()
    {
        var thin = new ThinPeers();
        NetMapStore Store()
        {
            var store = new NetMapStore(thin.Of);
            store.Apply(new NetMap { Version = 1, Self = new Node { Id = "self" }, Peers = { Full("198.18.0.1:1030", 5) } });
            return store;
        }
        var (a, b) = (Store(), Store());
        Assert.True(a.TryGetPeer("dev_abc", out var inA));
        Assert.True(b.TryGetPeer("dev_abc", out var inB));
        Assert.Same(inA, inB);

        a.Apply(new NetMapDelta { BaseVersion = 1, Version = 2, Patches = { new PeerPatch { Id = "dev_abc", EndpointsVersion = 6, Endpoints = new EndpointList { Endpoints = { "198.18.0.1:1031" } } } } });
        Assert.Equal(["198.18.0.1:1031"], a.View.Peers["dev_abc"].Endpoints);
        Assert.Equal(["198.18.0.1:1030"], b.View.Peers["dev_abc"].Endpoints);
    }
}
