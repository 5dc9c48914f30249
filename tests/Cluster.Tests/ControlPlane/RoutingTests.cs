using System.Net;
using System.Text;
using Akka.Actor;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.WireGuard;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>
/// Subnet routes end to end on a real coordinator: an agent advertises, the admin API approves and
/// revokes, and the other agents' netmaps, WireGuard allowed IPs, route tables and the router's
/// filter follow. The kernel side (forwarding, masquerade, policy routing) is in the namespace lab.
/// </summary>
public class RoutingTests(SharedCoordinator coordinator) : IClassFixture<SharedCoordinator>
{
    private HttpClient Http => coordinator.Http;

    private const string Subnet = "198.18.40.0/24";

    private const string Policy = """
        {
          "tagOwners": { "tag:router": [] },
          "acls": [ { "action": "accept", "src": ["alice@example.com"], "dst": ["198.18.40.0/24:*"] } ],
        }
        """;

    private async Task<string> Tailnet()
    {
        var tailnet = await coordinator.NewTailnet("routes");
        await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", new StringContent(Policy, Encoding.UTF8, "application/hujson")))
            .ReadAs<PolicyResource>(HttpStatusCode.OK);
        foreach (var user in new[] { "alice@example.com", "bob@example.com" })
            await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/users", new { name = user })).ReadAs<UserResource>(HttpStatusCode.Created);
        return tailnet;
    }

    private static TestAgent Router(AgentSystem agents, Uri control, string key, params string[] routes) =>
        TestAgent.Start(agents, [control], "router", key, tunnels: true, tune: o => o with { AdvertisedRoutes = [.. routes] });

    private static TestAgent Client(AgentSystem agents, Uri control, string name, string key) =>
        TestAgent.Start(agents, [control], name, key, tunnels: true, tunePlane: p => p with { AcceptRoutes = true });

    private async Task<DeviceRoutesResource> Routes(string tailnet, string device) =>
        await (await Http.GetAsync($"/api/v1/tailnets/{tailnet}/devices/{device}/routes")).ReadAs<DeviceRoutesResource>(HttpStatusCode.OK);

    [Fact]
    public async Task An_approved_route_reaches_the_allowed_peers_tunnels_and_route_tables_and_revoking_it_takes_it_away()
    {
        await using var agents = new AgentSystem();
        var tailnet = await Tailnet();
        using var router = Router(agents, coordinator.Control, (await Http.CreateAuthKey(tailnet, tags: ["tag:router"])).Key, Subnet);
        using var alice = Client(agents, coordinator.Control, "alice", (await Http.CreateAuthKey(tailnet, user: "alice@example.com")).Key);
        using var bob = Client(agents, coordinator.Control, "bob", (await Http.CreateAuthKey(tailnet, user: "bob@example.com")).Key);
        await router.WaitForState(ControlState.Running);
        await alice.WaitForState(ControlState.Running);

        // Advertised, not approved: in force nowhere.
        var advertised = await Eventually.Until(() => Routes(tailnet, router.DeviceId!), r => r.Advertised.Count == 1, "the advertisement reaches the coordinator");
        Assert.Equal([Subnet], advertised.Advertised);
        Assert.Empty(advertised.Enabled);
        Assert.Empty(alice.View.Peers);
        await router.WaitForNetMap(v => v.Self?.AdvertisedRoutes.Contains(Subnet) == true, "the router sees its own advertisement");

        // Approved: alice (whom the policy lets reach the subnet) gets the router, with the route, in her tunnels and route table.
        var approved = await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/{router.DeviceId}/routes", new { routes = new[] { Subnet } }))
            .ReadAs<DeviceRoutesResource>(HttpStatusCode.OK);
        Assert.Equal([Subnet], approved.Enabled);
        var view = await alice.WaitForNetMap(v => v.Peers.Values.Any(p => p.Routes.Contains(Subnet)), "alice gets the router with its route");
        Assert.Contains(Subnet, view.Peers.Values.Single().AllowedIps);
        await Eventually.Until(() => Task.FromResult(alice.Link!.Routes), r => r.Contains(IpPrefix.Parse(Subnet)), "alice routes the subnet into the tunnel");
        await Eventually.Until(() => Task.FromResult(alice.Device!.AllowedIps.Lookup(IPAddress.Parse("198.18.40.9"))?.PublicKey),
            key => key is not null && key.ToString() == router.Device!.PrivateKey!.PublicKey.ToString(), "WireGuard sends 198.18.40.9 to the router");
        var filter = await router.WaitForNetMap(v => v.Filter.Rules.Any(r => r.Destinations.Contains(Subnet)), "the router's filter opens the subnet");
        Assert.Equal(["user:alice@example.com"], filter.Filter.Rules.Single(r => r.Destinations.Contains(Subnet)).Sources);
        Assert.Empty(bob.View.Peers); // the policy gives bob nothing
        Assert.Empty(bob.Link!.Routes);

        // The router's agent restarts with the same routes: nothing changes. The coordinator kept the approval.
        var devices = await (await Http.GetAsync($"/api/v1/tailnets/{tailnet}/devices/{router.DeviceId}")).ReadAs<DeviceResource>(HttpStatusCode.OK);
        Assert.Equal([Subnet], devices.Routes!.Enabled);

        // Revoked: alice loses the router, its route and its allowed IPs.
        await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/{router.DeviceId}/routes", new { routes = Array.Empty<string>() }))
            .ReadAs<DeviceRoutesResource>(HttpStatusCode.OK);
        await alice.WaitForNetMap(v => v.Peers.IsEmpty, "alice loses the router");
        await Eventually.Until(() => Task.FromResult(alice.Link!.Routes), r => r.Count == 0, "alice's route goes");
        await Eventually.Until(() => Task.FromResult(alice.Device!.AllowedIps.Lookup(IPAddress.Parse("198.18.40.9"))), peer => peer is null,
            "WireGuard no longer sends 198.18.40.9 anywhere");
    }

    [Fact]
    public async Task A_restarted_agent_re_advertises_what_it_is_started_with_and_a_withdrawn_route_leaves_every_peer()
    {
        await using var agents = new AgentSystem();
        var tailnet = await Tailnet();
        var key = (await Http.CreateAuthKey(tailnet, reusable: true, tags: ["tag:router"])).Key;
        var store = new MemoryAgentStateStore();
        var router = TestAgent.Start(agents, [coordinator.Control], "router", key, store: store, tunnels: true, tune: o => o with { AdvertisedRoutes = [Subnet] });
        using var alice = Client(agents, coordinator.Control, "alice", (await Http.CreateAuthKey(tailnet, user: "alice@example.com")).Key);
        await router.WaitForState(ControlState.Running);
        await Eventually.Until(() => Routes(tailnet, router.DeviceId!), r => r.Advertised.Count == 1, "the advertisement");
        await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/{router.DeviceId}/routes", new { routes = new[] { Subnet } })).ReadAs<DeviceRoutesResource>(HttpStatusCode.OK);
        await alice.WaitForNetMap(v => v.Peers.Values.Any(p => p.Routes.Contains(Subnet)), "alice gets the route");

        // The same device (same state) comes back without --advertise-routes: the route is withdrawn, its approval kept.
        var deviceId = router.DeviceId!;
        await router.Stop();
        router.Dispose();
        using var again = TestAgent.Start(agents, [coordinator.Control], "router", null, store: store, tunnels: true, tune: o => o with { AdvertisedRoutes = [] });
        await again.WaitForState(ControlState.Running);
        Assert.Equal(deviceId, again.DeviceId);
        var after = await Eventually.Until(() => Routes(tailnet, deviceId), r => r.Advertised.Count == 0, "the withdrawal reaches the coordinator");
        Assert.Equal([Subnet], after.Approved);
        Assert.Empty(after.Enabled);
        await alice.WaitForNetMap(v => v.Peers.IsEmpty, "alice loses the router");
    }

    [Fact]
    public async Task Two_routers_for_one_subnet_one_carries_it_and_the_other_takes_over_when_it_goes_offline()
    {
        await using var agents = new AgentSystem();
        var tailnet = await Tailnet();
        var key = (await Http.CreateAuthKey(tailnet, reusable: true, tags: ["tag:router"])).Key;
        var first = TestAgent.Start(agents, [coordinator.Control], "router-1", key, tunnels: true, tune: o => o with { AdvertisedRoutes = [Subnet] });
        var second = TestAgent.Start(agents, [coordinator.Control], "router-2", key, tunnels: true, tune: o => o with { AdvertisedRoutes = [Subnet] });
        using var alice = Client(agents, coordinator.Control, "alice", (await Http.CreateAuthKey(tailnet, user: "alice@example.com")).Key);
        await first.WaitForState(ControlState.Running);
        await second.WaitForState(ControlState.Running);
        foreach (var router in new[] { first, second })
        {
            await Eventually.Until(() => Routes(tailnet, router.DeviceId!), r => r.Advertised.Count == 1, "the advertisement");
            await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/{router.DeviceId}/routes", new { routes = new[] { Subnet } })).ReadAs<DeviceRoutesResource>(HttpStatusCode.OK);
        }
        await alice.WaitForNetMap(v => v.Peers.Values.Count(p => p.Routes.Contains(Subnet) && p.Online) == 2, "alice sees both routers online");

        // Both online: the one with the lower device id carries the subnet; the other is a standby.
        var (carrier, standby) = string.CompareOrdinal(first.DeviceId, second.DeviceId) < 0 ? (first, second) : (second, first);
        Task<string?> CarrierKey() => Task.FromResult(alice.Device!.AllowedIps.Lookup(IPAddress.Parse("198.18.40.9"))?.PublicKey.ToString());
        await Eventually.Until(CarrierKey, k => k == carrier.Device!.PrivateKey!.PublicKey.ToString(), "the lower id carries the subnet");

        // The carrier's agent stops: its session ends, the netmap marks it offline, and the standby takes the subnet.
        await carrier.Stop();
        carrier.Dispose();
        await Eventually.Until(CarrierKey, k => k == standby.Device!.PrivateKey!.PublicKey.ToString(), "the standby takes over");
        standby.Dispose();
    }

    [Fact]
    public async Task Via_sends_alices_subnet_through_the_named_router_and_a_policy_edit_that_drops_via_hands_it_back_to_the_election()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("via");
        await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/users", new { name = "alice@example.com" })).ReadAs<UserResource>(HttpStatusCode.Created);
        string PolicyWith(string via) => $$"""
            {
              "tagOwners": { "tag:eu": [], "tag:us": [] },
              "grants": [
                { "src": ["alice@example.com"], "dst": ["{{Subnet}}"], "ip": ["*"]{{via}} },
                { "src": ["alice@example.com"], "dst": ["tag:eu", "tag:us"], "ip": ["22"] },
              ],
            }
            """;
        async Task SetPolicy(string text) =>
            await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", new StringContent(text, Encoding.UTF8, "application/hujson"))).ReadAs<PolicyResource>(HttpStatusCode.OK);
        await SetPolicy(PolicyWith(""));
        var eu = TestAgent.Start(agents, [coordinator.Control], "router-eu", (await Http.CreateAuthKey(tailnet, tags: ["tag:eu"])).Key, tunnels: true, tune: o => o with { AdvertisedRoutes = [Subnet] });
        var us = TestAgent.Start(agents, [coordinator.Control], "router-us", (await Http.CreateAuthKey(tailnet, tags: ["tag:us"])).Key, tunnels: true, tune: o => o with { AdvertisedRoutes = [Subnet] });
        using var alice = Client(agents, coordinator.Control, "alice", (await Http.CreateAuthKey(tailnet, user: "alice@example.com")).Key);
        foreach (var router in new[] { eu, us })
        {
            await router.WaitForState(ControlState.Running);
            await Eventually.Until(() => Routes(tailnet, router.DeviceId!), r => r.Advertised.Count == 1, "the advertisement");
            await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/{router.DeviceId}/routes", new { routes = new[] { Subnet } })).ReadAs<DeviceRoutesResource>(HttpStatusCode.OK);
        }
        await alice.WaitForNetMap(v => v.Peers.Values.Count(p => p.Routes.Contains(Subnet)) == 2, "without via, alice may use either router");

        // via tag:us: alice still sees both routers (ssh), but only the US one carries her subnet, whatever the ids.
        await SetPolicy(PolicyWith(""", "via": ["tag:us"]"""));
        var view = await alice.WaitForNetMap(v => v.Peers.Values.Count(p => p.Routes.Contains(Subnet)) == 1, "under via, one router carries alice's subnet");
        Assert.Equal(us.DeviceId, view.Peers.Values.Single(p => p.Routes.Contains(Subnet)).Id);
        Assert.Equal(2, view.Peers.Count);
        await Eventually.Until(() => Task.FromResult(alice.Device!.AllowedIps.Lookup(IPAddress.Parse("198.18.40.9"))?.PublicKey.ToString()),
            k => k == us.Device!.PrivateKey!.PublicKey.ToString(), "WireGuard sends alice's subnet to the US router");
        await eu.WaitForNetMap(v => !v.Filter.Rules.Any(r => r.Destinations.Contains(Subnet)), "the EU router no longer opens the subnet to alice");

        // via dropped again: both routers carry it for alice, and the election decides.
        await SetPolicy(PolicyWith(""));
        await alice.WaitForNetMap(v => v.Peers.Values.Count(p => p.Routes.Contains(Subnet)) == 2, "without via again, both routers");
        var elected = string.CompareOrdinal(eu.DeviceId, us.DeviceId) < 0 ? eu : us;
        await Eventually.Until(() => Task.FromResult(alice.Device!.AllowedIps.Lookup(IPAddress.Parse("198.18.40.9"))?.PublicKey.ToString()),
            k => k == elected.Device!.PrivateKey!.PublicKey.ToString(), "the election picks the lower id");
        eu.Dispose();
        us.Dispose();
    }

    [Fact]
    public async Task A_restarted_data_plane_and_control_client_keep_the_routes_and_follow_a_later_revocation()
    {
        await using var agents = new AgentSystem();
        var tailnet = await Tailnet();
        using var router = Router(agents, coordinator.Control, (await Http.CreateAuthKey(tailnet, tags: ["tag:router"])).Key, Subnet);
        using var alice = Client(agents, coordinator.Control, "alice", (await Http.CreateAuthKey(tailnet, user: "alice@example.com")).Key);
        await router.WaitForState(ControlState.Running);
        await Eventually.Until(() => Routes(tailnet, router.DeviceId!), r => r.Advertised.Count == 1, "the advertisement");
        await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/{router.DeviceId}/routes", new { routes = new[] { Subnet } })).ReadAs<DeviceRoutesResource>(HttpStatusCode.OK);
        await Eventually.Until(() => Task.FromResult(alice.Link!.Routes), r => r.Contains(IpPrefix.Parse(Subnet)), "alice routes the subnet");
        Task<string?> Carrier() => Task.FromResult(alice.Device!.AllowedIps.Lookup(IPAddress.Parse("198.18.40.9"))?.PublicKey.ToString());
        var routerKey = router.Device!.PrivateKey!.PublicKey.ToString();

        // alice's data plane crashes: the restarted actor re-learns the netmap; the routes and allowed IPs never went away.
        alice.DataPlane!.Tell(Kill.Instance);
        var status = await Eventually.Until(() => alice.DataPlane.Ask<Weft.NodeAgent.Agent.RoutingStatus>(Weft.NodeAgent.Agent.GetRoutingStatus.Instance, TimeSpan.FromSeconds(5)),
            s => s.Routes.Contains(Subnet), "the restarted data plane reports the subnet route");
        Assert.Null(status.ExitNode);
        Assert.Equal(routerKey, await Carrier());
        // The router's control client crashes: it reconnects and advertises again; nothing changes for alice.
        router.Client.Tell(Kill.Instance);
        await router.WaitForState(ControlState.Running);
        Assert.Equal([Subnet], (await Routes(tailnet, router.DeviceId!)).Enabled);

        // A revocation after the restarts reaches alice's tunnels and route table: nothing stale is left behind.
        await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/{router.DeviceId}/routes", new { routes = Array.Empty<string>() })).ReadAs<DeviceRoutesResource>(HttpStatusCode.OK);
        await Eventually.Until(() => Task.FromResult(alice.Link!.Routes), r => r.Count == 0, "alice's route goes");
        await Eventually.Until(Carrier, k => k is null, "WireGuard no longer sends 198.18.40.9 anywhere");
        await Eventually.Until(() => alice.DataPlane.Ask<Weft.NodeAgent.Agent.RoutingStatus>(Weft.NodeAgent.Agent.GetRoutingStatus.Instance, TimeSpan.FromSeconds(5)),
            s => s.Routes.Count == 0, "the data plane reports no route");
    }

    [Fact]
    public async Task Malformed_route_requests_get_a_clear_error_and_change_nothing()
    {
        await using var agents = new AgentSystem();
        var tailnet = await Tailnet();
        using var router = Router(agents, coordinator.Control, (await Http.CreateAuthKey(tailnet, tags: ["tag:router"])).Key, Subnet);
        await router.WaitForState(ControlState.Running);
        await Eventually.Until(() => Routes(tailnet, router.DeviceId!), r => r.Advertised.Count == 1, "the advertisement");
        var path = $"/api/v1/tailnets/{tailnet}/devices/{router.DeviceId}/routes";

        foreach (var (body, expected) in new (object, string)[]
        {
            (new { routes = new[] { "198.18.40" } }, "is not a CIDR prefix"),
            (new { routes = new[] { "198.18.41.0/24" } }, "does not advertise 198.18.41.0/24"),
            (new { routes = new[] { "0.0.0.0/0" } }, "give both, or neither"),
            (new { routes = "198.18.40.0/24" }, "routes"),
            (new { }, "missing required field 'routes'"),
        })
        {
            var error = await (await Http.PostJson(path, body)).ReadError(HttpStatusCode.BadRequest);
            Assert.Contains(expected, error.Message);
        }
        Assert.Empty((await Routes(tailnet, router.DeviceId!)).Approved);
    }
}
