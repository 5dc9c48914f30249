using System.Collections.Immutable;
using Akka.Actor;
using System.Net;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;
using Weft.Contracts.Control;
using Weft.NodeAgent.Control;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>Real agents on real gRPC streams: who sees whom, and how changes reach them.</summary>
public class NetMapPropagationTests(SharedCoordinator coordinator) : IClassFixture<SharedCoordinator>
{
    private HttpClient Http => coordinator.Http;

    private async Task<(TestAgent[] A, TestAgent B, string TailnetA, string TailnetB)> ThreeAgentsInAOneInB(AgentSystem agents)
    {
        var tailnetA = await coordinator.NewTailnet("alpha");
        var tailnetB = await coordinator.NewTailnet("beta");
        var keyA = (await Http.CreateAuthKey(tailnetA, reusable: true)).Key;
        var keyB = (await Http.CreateAuthKey(tailnetB)).Key;
        var a = Enumerable.Range(1, 3)
            .Select(i => TestAgent.Start(agents, coordinator.Control, $"a{i}", keyA, endpoints: [$"198.18.1.{i}:41641"]))
            .ToArray();
        var b = TestAgent.Start(agents, coordinator.Control, "b1", keyB);
        foreach (var agent in a.Append(b)) await agent.WaitForState(ControlState.Running);
        return (a, b, tailnetA, tailnetB);
    }

    [Fact]
    public async Task Each_agent_sees_exactly_the_other_devices_of_its_tailnet_and_nothing_of_another()
    {
        await using var agents = new AgentSystem();
        var (a, b, tailnetA, tailnetB) = await ThreeAgentsInAOneInB(agents);

        var views = new List<NetMapView>();
        for (var i = 0; i < 3; i++)
        {
            await a[i].WaitForPeers(a.Where((_, j) => j != i).ToArray());
            views.Add(await a[i].WaitForNetMap(v => v.Peers.Values.All(p => p.Endpoints.Count == 1 && p.Online), "its peers online with their endpoints"));
        }
        var bView = await b.WaitForNetMap(view => view.Self!.Status == "active", "its own map");

        Assert.Empty(bView.Peers);
        Assert.Equal(tailnetB, bView.TailnetId);
        foreach (var view in views)
        {
            Assert.Equal(tailnetA, view.TailnetId);
            Assert.DoesNotContain(b.DeviceId, view.Peers.Keys);
            Assert.All(view.Peers.Values, peer =>
            {
                Assert.Equal(2, peer.Addresses.Count);
                Assert.StartsWith("100.", peer.Addresses[0]);
                Assert.StartsWith("fd7a:115c:a1e0:", peer.Addresses[1]);
                Assert.Equal(32, peer.NodeKey.Length);
                Assert.Single(peer.Endpoints);
            });
        }
        // Addresses are unique within the tailnet.
        var addresses = views.Select(v => v.Self!.Addresses[0]).ToList();
        Assert.Equal(3, addresses.Distinct().Count());

        // The admin API's debugging view of a device's netmap agrees with what the agent holds.
        var netmap = await Http.GetStringAsync($"/api/v1/tailnets/{tailnetA}/devices/{a[0].DeviceId}/netmap");
        var parsed = NetMap.Parser.ParseJson(netmap);
        Assert.Equal(views[0].Peers.Keys.Order(), parsed.Peers.Select(p => p.Id).Order());
    }

    [Fact]
    public async Task An_endpoint_change_reaches_the_peers_as_a_patch_not_a_full_map()
    {
        await using var agents = new AgentSystem();
        var (a, _, _, _) = await ThreeAgentsInAOneInB(agents);
        for (var i = 0; i < 3; i++) await a[i].WaitForPeers(a.Where((_, j) => j != i).ToArray());
        var fullMapsBefore = a.Select(agent => agent.Received.Count(m => m.BodyCase == ServerMessage.BodyOneofCase.Netmap)).ToArray();
        var moverId = a[0].DeviceId!;

        a[0].Client.Tell(new SetEndpoints(["198.18.9.9:5555", "[2001:db8::1]:5555"], HomeRelay: 7));

        foreach (var peer in a[1..])
        {
            var view = await peer.WaitForNetMap(v => v.Peers[moverId].Endpoints.Contains("198.18.9.9:5555"), "the new endpoint");
            Assert.Equal(7, view.Peers[moverId].HomeRelay);
            Assert.Equal(["198.18.9.9:5555", "[2001:db8::1]:5555"], view.Peers[moverId].Endpoints);
            var carrying = peer.Received.Last(m => m.BodyCase == ServerMessage.BodyOneofCase.Delta
                && m.Delta.Patches.Any(p => p.Id == moverId && p.Endpoints?.Endpoints.Contains("198.18.9.9:5555") == true));
            Assert.Empty(carrying.Delta.PeersAdded);
            Assert.Empty(carrying.Delta.PeersChanged);
            Assert.Equal(carrying.Delta.BaseVersion + 1, carrying.Delta.Version);
        }
        // Nobody got a full map because of the change.
        Assert.Equal(fullMapsBefore, a.Select(agent => agent.Received.Count(m => m.BodyCase == ServerMessage.BodyOneofCase.Netmap)).ToArray());
        // The mover's own record is stored.
        var stored = await Http.GetDevice((await a[0].Status()).TailnetId!, moverId);
        Assert.Equal(["198.18.9.9:5555", "[2001:db8::1]:5555"], stored.Endpoints);
    }

    [Fact]
    public async Task A_new_dns_suffix_renames_every_node_each_agent_holds_not_only_its_dns_settings()
    {
        // The suffix is in every node's FQDN: sent the DNS settings alone, an agent held the new suffix with
        // the old names, and its MagicDNS could build no name table from them (it kept the old one).
        await using var agents = new AgentSystem();
        var (a, _, tailnetA, _) = await ThreeAgentsInAOneInB(agents);
        for (var i = 0; i < 3; i++) await a[i].WaitForPeers(a.Where((_, j) => j != i).ToArray());

        var response = await Http.PatchJson($"/api/v1/tailnets/{tailnetA}", new UpdateTailnetSettingsRequest(DnsSuffix: "corp.example"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        static bool Renamed(Node node) => node.Fqdn.TrimEnd('.').EndsWith(".corp.example", StringComparison.Ordinal);
        foreach (var agent in a)
        {
            var view = await agent.WaitForNetMap(v => Renamed(v.Self!) && v.Peers.Count == 2 && v.Peers.Values.All(Renamed), "every name under the new suffix");
            Assert.Equal("corp.example", view.Dns?.Suffix);
        }
    }

    [Fact]
    public async Task A_deleted_device_leaves_its_peers_netmaps_and_its_agent_is_told()
    {
        await using var agents = new AgentSystem();
        var (a, _, tailnetA, _) = await ThreeAgentsInAOneInB(agents);
        for (var i = 0; i < 3; i++) await a[i].WaitForPeers(a.Where((_, j) => j != i).ToArray());
        var goneId = a[2].DeviceId!;

        var response = await Http.DeleteAsync($"/api/v1/tailnets/{tailnetA}/devices/{goneId}");
        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);

        await a[0].WaitForPeers(a[1]);
        await a[1].WaitForPeers(a[0]);
        await a[2].WaitForState(ControlState.NeedsLogin, ControlErrorCodes.DeviceDeleted);
        Assert.Contains(a[0].Received, m => m.BodyCase == ServerMessage.BodyOneofCase.Delta && m.Delta.PeersRemoved.Contains(goneId));
        Assert.DoesNotContain((await Http.ListDevices(tailnetA)).Devices, d => d.Id == goneId);
        Assert.Null(a[2].DeviceId); // the agent forgot the device it was
    }

    [Fact]
    public async Task An_expired_device_leaves_its_peers_netmaps_and_must_re_authorise()
    {
        await using var agents = new AgentSystem();
        var (a, _, tailnetA, _) = await ThreeAgentsInAOneInB(agents);
        for (var i = 0; i < 3; i++) await a[i].WaitForPeers(a.Where((_, j) => j != i).ToArray());
        var expiredId = a[1].DeviceId!;

        var expired = await (await Http.PostAsync($"/api/v1/tailnets/{tailnetA}/devices/{expiredId}/expire", null)).ReadAs<DeviceResource>(HttpStatusCode.OK);
        Assert.Equal("expired", expired.Status);

        await a[0].WaitForPeers(a[2]);
        await a[2].WaitForPeers(a[0]);
        await a[1].WaitForState(ControlState.NeedsLogin, ControlErrorCodes.DeviceExpired);

        // Re-authorising with a key brings it back, with its old addresses.
        var key = (await Http.CreateAuthKey(tailnetA)).Key;
        await a[1].Stop();
        var back = TestAgent.Start(agents, [coordinator.Control], "a2", key, store: a[1].Store, forceReauth: true);
        await back.WaitForState(ControlState.Running);
        await a[0].WaitForPeers(back, a[2]);
        Assert.Equal(expiredId, back.DeviceId);
        Assert.Equal(expired.Addresses, (await Http.GetDevice(tailnetA, expiredId)).Addresses);
    }

    [Fact]
    public async Task A_rotated_node_key_reaches_the_peers_and_the_state_file()
    {
        await using var agents = new AgentSystem();
        var (a, _, tailnetA, _) = await ThreeAgentsInAOneInB(agents);
        for (var i = 0; i < 3; i++) await a[i].WaitForPeers(a.Where((_, j) => j != i).ToArray());
        var rotatingId = a[0].DeviceId!;
        var oldKey = (await a[0].Status()).NodeKey;

        a[0].Client.Tell(RotateNodeKeyNow.Instance);

        var newKeyHex = await WaitForNewKey(a[0], oldKey);
        foreach (var peer in a[1..])
        {
            var view = await peer.WaitForNetMap(v => Convert.ToHexStringLower(v.Peers[rotatingId].NodeKey.Span) == newKeyHex, "the rotated key");
            Assert.Contains(peer.Received, m => m.BodyCase == ServerMessage.BodyOneofCase.Delta && m.Delta.Patches.Any(p => p.Id == rotatingId && p.HasNodeKey));
            Assert.NotNull(view.Peers[rotatingId].KeyExpiry);
        }
        Assert.Equal("nodekey:" + newKeyHex, (await Http.GetDevice(tailnetA, rotatingId)).NodeKey);
        var state = a[0].Store.Load();
        Assert.Null(state.NextNodePrivateKey);
        using var stored = AgentStateFile.Key(state.NodePrivateKey);
        Assert.Equal(newKeyHex, stored.PublicKey.ToHex());
    }

    [Fact]
    public async Task Asking_to_rotate_again_while_a_rotation_is_in_flight_rotates_once_and_the_agent_keeps_the_devices_key()
    {
        await using var agents = new AgentSystem();
        var (a, _, tailnetA, _) = await ThreeAgentsInAOneInB(agents);
        await a[0].WaitForPeers(a[1], a[2]);
        var rotatingId = a[0].DeviceId!;
        var oldKey = (await a[0].Status()).NodeKey;

        // Three asks in one go (the load tester's churn, or `weft-agent rotate` run twice). Before, each sent the
        // same rotation: the coordinator applied the first and refused the others, and when a refusal reached
        // the agent before the confirmation, the agent dropped the key the device now had (node_key_mismatch).
        for (var i = 0; i < 3; i++) a[0].Client.Tell(RotateNodeKeyNow.Instance);

        var newKeyHex = await WaitForNewKey(a[0], oldKey);
        Assert.Equal("nodekey:" + newKeyHex, (await Http.GetDevice(tailnetA, rotatingId)).NodeKey);
        // No refusal follows: each answer to a request sent has arrived well within this window.
        var quietUntil = DateTime.UtcNow + TimeSpan.FromSeconds(2);
        while (DateTime.UtcNow < quietUntil)
        {
            var status = await a[0].Status();
            Assert.Null(status.Code);
            Assert.Equal("nodekey:" + newKeyHex, status.NodeKey);
            await Task.Delay(50);
        }
        Assert.Null(a[0].Store.Load().NextNodePrivateKey);

        // The stream is made again with the rotated key.
        a[0].Client.Tell(new Reconnect(After: TimeSpan.FromSeconds(1)));
        await a[0].WaitForState(ControlState.Connecting);
        await a[0].WaitForState(ControlState.Running);
        Assert.Equal("nodekey:" + newKeyHex, (await a[0].Status()).NodeKey);
        await a[1].WaitForNetMap(v => v.Peers[rotatingId].Online && Convert.ToHexStringLower(v.Peers[rotatingId].NodeKey.Span) == newKeyHex, "the rotated peer online");
    }

    private static async Task<string> WaitForNewKey(TestAgent agent, string oldKey)
    {
        var deadline = DateTime.UtcNow + TestAgent.Deadline;
        while (DateTime.UtcNow < deadline)
        {
            var status = await agent.Status();
            if (status.NodeKey != oldKey) return status.NodeKey["nodekey:".Length..];
            await Task.Delay(50);
        }
        throw new TimeoutException("the node key never rotated");
    }
}

/// <summary>Versions across reconnects: the missing deltas when the device still has them.</summary>
public class ResumeTests(SharedCoordinator coordinator) : IClassFixture<SharedCoordinator>
{
    [Fact]
    public async Task An_agent_that_reconnects_with_its_version_gets_the_deltas_it_missed_not_a_full_map()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("resume");
        var key = (await coordinator.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        var mover = TestAgent.Start(agents, coordinator.Control, "mover", key);
        var sleeper = TestAgent.Start(agents, coordinator.Control, "sleeper", key);
        await sleeper.WaitForPeers(mover);
        await mover.WaitForPeers(sleeper);
        var moverId = mover.DeviceId!;
        var fullMaps = sleeper.Received.Count(m => m.BodyCase == ServerMessage.BodyOneofCase.Netmap);
        var versionBefore = sleeper.View.Version;

        // The sleeper is away for a moment; meanwhile the mover moves twice.
        sleeper.Client.Tell(new Reconnect(After: TimeSpan.FromSeconds(3)));
        await sleeper.WaitForState(ControlState.Connecting);
        await mover.WaitForNetMap(v => !v.Peers[sleeper.DeviceId!].Online, "the sleeper offline");
        mover.Client.Tell(new SetEndpoints(["198.18.6.1:1"], 0));
        await Task.Delay(300);
        mover.Client.Tell(new SetEndpoints(["198.18.6.2:2"], 0));

        var view = await sleeper.WaitForNetMap(v => v.Peers[moverId].Endpoints.SequenceEqual(["198.18.6.2:2"]), "the mover's latest endpoint");

        Assert.Equal(fullMaps, sleeper.Received.Count(m => m.BodyCase == ServerMessage.BodyOneofCase.Netmap));
        var resumed = sleeper.Received.Where(m => m.BodyCase == ServerMessage.BodyOneofCase.Delta && m.Delta.BaseVersion >= versionBefore).ToList();
        Assert.NotEmpty(resumed);
        Assert.Equal(versionBefore, resumed[0].Delta.BaseVersion);
        for (var i = 1; i < resumed.Count; i++) Assert.Equal(resumed[i - 1].Delta.Version, resumed[i].Delta.BaseVersion);
        Assert.True(view.Version > versionBefore);
    }
}
