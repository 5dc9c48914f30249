using Weft.Cluster.Policy;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Control;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>Full maps built from peers encoded for earlier maps: the same map as one built from the state, whatever changed in between.</summary>
public class EncodedPeerNodesTests
{
    // The tailnet and devices of the fan-out tests.
    private const string T = PeerFanOutTests.T;
    private static readonly DateTimeOffset Now = PeerFanOutTests.Now;

    private static void AssertSameMap(TailnetState state, string deviceId, Func<string, bool> isOnline, EncodedPeerNodes peers)
    {
        var engine = PolicyEngine.Compile(state.Policy, state.PolicyDevices());
        var expected = NetMapBuilder.Build(state, deviceId, engine, isOnline);
        Assert.Equal(expected, NetMap.Parser.ParseFrom(NetMapBuilder.BuildEncoded(state, deviceId, engine, isOnline, peers)));
    }

    private static TailnetState Applied(TailnetState state, ITailnetCommand command)
    {
        var decision = state.Process(command);
        Assert.Null(decision.Rejection);
        foreach (var e in decision.Events) state = state.Apply(e);
        return state;
    }

    [Fact]
    public void A_map_from_encoded_peers_is_the_map_built_from_the_state_after_each_change_a_peers_node_is_made_from()
    {
        var state = PeerFanOutTests.WithDevices(5, out var ids);
        var online = new HashSet<string>(ids.Take(2));
        var peers = new EncodedPeerNodes();
        AssertSameMap(state, ids[0], online.Contains, peers);
        AssertSameMap(state, ids[1], online.Contains, peers);
        Assert.Equal(5, peers.Count);
        // Nothing changed: the very same encoding serves the next map.
        Assert.Same(peers.Of(state, state.Devices[ids[2]], false), peers.Of(state, state.Devices[ids[2]], false));

        // Each input of a peer's node in turn: its entry, its presence, the DNS suffix, its user's name.
        state = Applied(state, new RenameDevice(T, ids[2], "renamed"));
        AssertSameMap(state, ids[0], online.Contains, peers);
        var report = new UpdateDeviceEndpoints(T, ids[3], ["198.18.0.4:41641"], 2, new string('d', 64), Version: 9);
        foreach (var e in state.Process(report).Events) state = state.Apply(e).WithEndpointsReported(ids[3], report.Version);
        AssertSameMap(state, ids[0], online.Contains, peers);
        online.Add(ids[4]);
        AssertSameMap(state, ids[0], online.Contains, peers);
        state = Applied(state, new ChangeTailnetSettings(T, DnsSuffix: "other.weft"));
        AssertSameMap(state, ids[0], online.Contains, peers);
        state = state.Apply(new UserCreated(new TailnetUser("us_a", "alice", Now)));
        state = state with { Devices = state.Devices.SetItem(ids[1], state.Devices[ids[1]] with { UserId = "us_a" }) };
        AssertSameMap(state, ids[0], online.Contains, peers);
        state = state.Apply(new UserSignedIn(new TailnetUser("us_a", "alice.new", Now)));
        AssertSameMap(state, ids[0], online.Contains, peers);
        Assert.Contains(NetMap.Parser.ParseFrom(NetMapBuilder.BuildEncoded(state, ids[0], PolicyEngine.Compile(state.Policy, state.PolicyDevices()), online.Contains, peers)).Peers,
            node => node.User == "alice.new" && node.Fqdn.EndsWith(".other.weft"));

        // A device that left is forgotten at the next prune.
        state = Applied(state, new DeleteDevice(T, ids[4]));
        peers.Prune(state);
        Assert.Equal(4, peers.Count);
        AssertSameMap(state, ids[0], online.Contains, peers);
    }
}
