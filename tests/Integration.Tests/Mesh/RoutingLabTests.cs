using System.Diagnostics;
using System.Text.Json;
using Weft.Lab;

namespace Weft.Integration.Tests.Mesh;

/// <summary>
/// Subnet routers and exit nodes on real networks: a coordinator process on the host, agents in
/// network namespaces with real TUN devices, a LAN behind the router (198.18.40.0/24) and an
/// "internet" behind the exit node (198.19.0.0/24). Neither the LAN nor the internet host has a
/// route back to the tailnet: their answers come back only because the router and the exit node
/// masquerade, as Tailscale's do by default.
/// </summary>
public class RoutingLabTests
{
    private const string Hub = "198.18.0.254";
    private const string LanHost = "198.18.40.2", InternetHost = "198.19.0.2";

    private const string Policy = """
        {
          "tagOwners": { "tag:router": [], "tag:exit": [], "tag:alice": [], "tag:bob": [] },
          "autoApprovers": { "exitNode": ["tag:exit"] },
          "acls": [
            // alice may use the LAN behind the router, and the internet through exit nodes.
            { "action": "accept", "src": ["tag:alice"], "dst": ["198.18.40.0/24:*", "autogroup:internet:*"] },
            // bob may reach the router itself (so he sees it and its route), but not the LAN behind it.
            { "action": "accept", "src": ["tag:bob"], "dst": ["tag:router:22"] },
          ],
        }
        """;

    [SkippableFact]
    public async Task A_subnet_router_and_an_exit_node_carry_what_the_policy_allows_and_revoking_a_route_cuts_it()
    {
        await using var lab = LabTest.Open("ping", "iperf3", "nft");
        var segment = Segment.Create(lab);
        segment.AttachHost(Hub + "/24");
        var coordinator = WeftCoordinator.Start(lab, Hub);
        await LabTest.WithLogsOnFailure(lab, "routing", () => Scenario(lab, segment, coordinator));
    }

    private static async Task Scenario(Lab.Lab lab, Segment segment, WeftCoordinator coordinator)
    {
        var tailnet = await coordinator.CreateTailnet("routing");
        await coordinator.Send(HttpMethod.Post, $"/api/v1/tailnets/{tailnet}/policy", Policy);

        // The machines: four on the underlay, a LAN host behind the router, an internet host behind the exit node.
        var machines = new Dictionary<string, Namespace>();
        foreach (var (name, index) in new[] { ("router", 1), ("exit", 2), ("alice", 3), ("bob", 4) })
        {
            machines[name] = lab.AddNamespace(name);
            segment.Attach(machines[name], $"198.18.0.{index}/24");
        }
        var lan = lab.AddNamespace("lan");
        lab.Connect(machines["router"], "198.18.40.1/24", lan, LanHost + "/24");
        var internet = lab.AddNamespace("inet");
        lab.Connect(machines["exit"], "198.19.0.1/24", internet, InternetHost + "/24");

        async Task<WeftAgent> Join(string name, params string[] options) =>
            WeftAgent.Start(machines[name], name, coordinator.Control, await coordinator.CreateAuthKey(tailnet, tags: ["tag:" + name]), options);

        var router = await Join("router", "--advertise-routes", "198.18.40.0/24");
        var exit = await Join("exit", "--advertise-exit-node");
        var alice = await Join("alice", "--accept-routes", "--exit-node", "exit");
        var bob = await Join("bob", "--accept-routes");

        // The router's route waits for an admin; the exit node is approved by autoApprovers.exitNode.
        var routerId = router.Status().GetProperty("deviceId").GetString()!;
        var routes = await Get(coordinator, $"/api/v1/tailnets/{tailnet}/devices/{routerId}/routes",
            r => r.GetProperty("advertised").GetArrayLength() == 1, "the router's advertisement");
        Assert.Equal(0, routes.GetProperty("enabled").GetArrayLength());
        var exitId = exit.Status().GetProperty("deviceId").GetString()!;
        await Get(coordinator, $"/api/v1/tailnets/{tailnet}/devices/{exitId}/routes", r => r.GetProperty("exitNode").GetBoolean(), "the exit node's auto-approval");
        Assert.True(Blocked(alice, LanHost), "alice must not reach the LAN before the route is approved");

        // Approved: alice reaches the LAN host (ping, and TCP with iperf3); bob, whom the policy forbids, does not.
        await coordinator.Post($"/api/v1/tailnets/{tailnet}/devices/{routerId}/routes", new { routes = new[] { "198.18.40.0/24" } });
        Assert.True(Traffic.PingUntilAnswered(alice.Machine, LanHost, TimeSpan.FromSeconds(30)) is not null, "alice → LAN host through the subnet router");
        var mbits = Traffic.Iperf(lan, LanHost, alice.Machine, TimeSpan.FromSeconds(2));
        Assert.True(mbits > 0, $"iperf3 alice → LAN host moved no data ({mbits} Mbit/s)");
        WaitForPeerRoute(bob, "router", "198.18.40.0/24"); // bob sees the router and routes the subnet to it…
        Assert.True(Traffic.PingUntilAnswered(bob.Machine, router.Addresses().V4, TimeSpan.FromSeconds(20)) is not null, "bob reaches the router itself");
        Assert.True(Blocked(bob, LanHost), "…but the router's filter drops bob's packets for the LAN");

        // The exit node: alice's internet traffic goes through it; bob, without one, has no way out.
        Assert.True(Traffic.PingUntilAnswered(alice.Machine, InternetHost, TimeSpan.FromSeconds(30)) is not null, "alice → internet host through the exit node");
        Assert.True(Blocked(bob, InternetHost), "bob uses no exit node: the internet host is out of reach");
        var status = alice.Status();
        Assert.Equal("exit", status.GetProperty("routing").GetProperty("exitNode").GetString());
        Assert.Contains("0.0.0.0/0", status.GetProperty("routing").GetProperty("routes").EnumerateArray().Select(r => r.GetString()));
        var (textCode, text) = alice.Cli("status");
        Assert.True(textCode == 0, text);
        Assert.Contains("exit node:    exit", text);
        Assert.Matches(@"\nrouter\s.*198\.18\.40\.0/24", text);

        // Another program takes the routing away while the agents run: systemd-networkd, restarting, deletes the
        // rules it did not make, and an nftables reload starts with `flush ruleset`. Within a check (every 10 s)
        // each agent puts its own back: alice's rules and routes, the router's masquerading.
        alice.Machine.Run("ip", "-4", "rule", "del", "pref", "5770");
        alice.Machine.Run("ip", "-4", "route", "flush", "table", "5746");
        machines["router"].Run("nft", "delete", "table", "inet", "weft-weft0");
        Assert.True(Traffic.PingUntilAnswered(alice.Machine, InternetHost, TimeSpan.FromSeconds(30)) is not null, "alice → internet host once her rules and routes are back");
        Assert.True(Traffic.PingUntilAnswered(alice.Machine, LanHost, TimeSpan.FromSeconds(30)) is not null, "alice → LAN host once the router's masquerading is back");
        Assert.Contains("lookup 5746", alice.Machine.Run("ip", "-4", "rule", "list"));
        Assert.Contains("masquerade", machines["router"].Run("nft", "list", "table", "inet", "weft-weft0"));

        // Another program sets bob's interface down and up again (a network manager re-applying its settings): the
        // kernel takes every route through it, the tailnet ranges' among them, and its IPv6 address. Within a check
        // bob's agent puts them back, and reaches the router again.
        var bobV6 = bob.Addresses().V6;
        bob.Machine.Run("ip", "link", "set", "weft0", "down");
        bob.Machine.Run("ip", "link", "set", "weft0", "up");
        Assert.True(Traffic.PingUntilAnswered(bob.Machine, router.Addresses().V4, TimeSpan.FromSeconds(30)) is not null, "bob → router once its tailnet route is back");
        Assert.Contains("fd7a:115c:a1e0::/48", bob.Machine.Run("ip", "-6", "route", "show", "dev", "weft0"));
        Assert.Contains(bobV6, bob.Machine.Run("ip", "-6", "address", "show", "dev", "weft0"));

        // The router's agent is killed (no clean-up at all) and started again on its state: it re-advertises,
        // the coordinator kept the approval, and its forwarding and masquerade come back with it.
        router.Process!.Stop(TimeSpan.FromSeconds(5), "KILL");
        Assert.True(Blocked(alice, LanHost), "the LAN must be out of reach while its router is down");
        router.Run();
        Assert.True(Traffic.PingUntilAnswered(alice.Machine, LanHost, TimeSpan.FromSeconds(30)) is not null, "alice → LAN host after the router restarted");
        Assert.Single(machines["router"].Run("nft", "list", "tables").Split('\n'), line => line.Contains("weft-weft0"));

        // Revoking the route cuts alice's LAN traffic, through every peer, within the propagation time.
        var clock = Stopwatch.StartNew();
        await coordinator.Post($"/api/v1/tailnets/{tailnet}/devices/{routerId}/routes", new { routes = Array.Empty<string>() });
        var cut = false;
        while (!cut && clock.Elapsed < TimeSpan.FromSeconds(30)) cut = Traffic.Ping(alice.Machine, LanHost, 1, waitSeconds: 1) == 0;
        Assert.True(cut, "alice still reaches the LAN 30 s after the route was revoked");
        Console.WriteLine($"routing lab: LAN traffic stopped {clock.ElapsedMilliseconds} ms after the revocation; iperf3 alice → LAN {mbits:0} Mbit/s");
        WaitForPeerRoute(bob, "router", null);

        // The router's nftables table and alice's routing rules go when their agents stop.
        Assert.Contains("masquerade", machines["router"].Run("nft", "list", "table", "inet", "weft-weft0"));
        Assert.Contains("lookup 5746", alice.Machine.Run("ip", "rule", "list"));
        router.Stop();
        alice.Stop();
        Assert.Throws<LabException>(() => machines["router"].Run("nft", "list", "table", "inet", "weft-weft0"));
        Assert.DoesNotContain("lookup 5746", alice.Machine.Run("ip", "rule", "list"));
    }

    private static bool Blocked(WeftAgent from, string address) => Traffic.Ping(from.Machine, address, 3, waitSeconds: 1) == 0;

    /// <summary>Waits until the agent's status shows the peer with this subnet route (or, with null, with none).</summary>
    private static void WaitForPeerRoute(WeftAgent agent, string peer, string? route)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        JsonElement status;
        do
        {
            status = agent.Status();
            var routes = status.GetProperty("peers").EnumerateArray().Where(p => p.GetProperty("name").GetString() == peer)
                .SelectMany(p => p.GetProperty("routes").EnumerateArray().Select(r => r.GetString())).ToList();
            if (route is null ? routes.Count == 0 : routes.Contains(route)) return;
            Thread.Sleep(200);
        } while (DateTime.UtcNow < deadline);
        throw new LabException($"{agent.Name} never saw {peer} with {(route ?? "no route")}: {status}");
    }

    private static async Task<JsonElement> Get(WeftCoordinator coordinator, string path, Func<JsonElement, bool> holds, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var body = JsonDocument.Parse(await coordinator.Http.GetStringAsync(path)).RootElement.Clone();
            if (holds(body)) return body;
            if (DateTime.UtcNow > deadline) throw new LabException($"{what} never showed: {body}");
            await Task.Delay(200);
        }
    }
}
