using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Weft.Lab;

namespace Weft.Integration.Tests.Mesh;

/// <summary>
/// The whole product on real networks: a coordinator process, and agents (<c>weft-agent up</c>) in
/// network namespaces with real TUN devices, joined through the coordinator and talking over the
/// tunnels they built from their netmaps.
/// </summary>
public class MeshTests
{
    private const string Hub = "198.18.0.254";

    /// <summary>Three machines of one tailnet on one underlay link, plus the coordinator on the host.</summary>
    private sealed record Mesh(Lab.Lab Lab, Segment Segment, WeftCoordinator Coordinator, string Tailnet, WeftAgent A, WeftAgent B, WeftAgent C)
    {
        public WeftAgent[] All => [A, B, C];
    }

    /// <summary>A coordinator on the hub with a tailnet, and one lab machine per name on the underlay link (198.18.0.1, .2, …), no agents yet.</summary>
    private static async Task<(WeftCoordinator Coordinator, string Tailnet, Dictionary<string, Lab.Namespace> Machines)> HubAndMachines(Lab.Lab lab, string tailnet, params string[] names)
    {
        var segment = Segment.Create(lab);
        segment.AttachHost(Hub + "/24");
        var coordinator = WeftCoordinator.Start(lab, Hub);
        var id = await coordinator.CreateTailnet(tailnet);
        var machines = new Dictionary<string, Lab.Namespace>();
        foreach (var (name, index) in names.Select((name, i) => (name, i + 1)))
        {
            machines[name] = lab.AddNamespace(name);
            segment.Attach(machines[name], $"198.18.0.{index}/24");
        }
        return (coordinator, id, machines);
    }

    private static async Task<Mesh> StartMesh(Lab.Lab lab)
    {
        var segment = Segment.Create(lab);
        segment.AttachHost(Hub + "/24");
        var coordinator = WeftCoordinator.Start(lab, Hub);
        var tailnet = await coordinator.CreateTailnet("mesh");
        // Every device may reach every other (no acls: Tailscale's default), and the tags exist.
        await coordinator.Send(HttpMethod.Post, $"/api/v1/tailnets/{tailnet}/policy", """{ "tagOwners": { "tag:a": [], "tag:b": [], "tag:c": [] } }""");
        var agents = new List<WeftAgent>();
        foreach (var (name, index) in new[] { ("a", 1), ("b", 2), ("c", 3) })
        {
            var machine = lab.AddNamespace(name);
            segment.Attach(machine, $"198.18.0.{index}/24");
            var key = await coordinator.CreateAuthKey(tailnet, tags: ["tag:" + name]);
            agents.Add(WeftAgent.Start(machine, name, coordinator.Control, key));
        }
        var mesh = new Mesh(lab, segment, coordinator, tailnet, agents[0], agents[1], agents[2]);
        foreach (var agent in mesh.All) agent.WaitForPeers(mesh.All.Where(a => a != agent).Select(a => a.Name).ToArray());
        return mesh;
    }

    private static bool Reaches(WeftAgent from, string address) => Traffic.PingUntilAnswered(from.Machine, address, TimeSpan.FromSeconds(10)) is not null;

    private static bool Blocked(WeftAgent from, string address) => Traffic.Ping(from.Machine, address, 3, waitSeconds: 1) == 0;

    [SkippableFact]
    public async Task Three_agents_build_a_mesh_that_follows_policy_rotation_and_deletion_and_outlives_the_coordinator()
    {
        await using var lab = LabTest.Open("ping", "dig", "setpriv");
        var mesh = await StartMesh(lab);
        await LabTest.WithLogsOnFailure(lab, "mesh", () => MeshScenario(lab, mesh));
    }

    private static async Task MeshScenario(Lab.Lab lab, Mesh mesh)
    {
        var (a, b, c) = (mesh.A, mesh.B, mesh.C);
        var address = mesh.All.ToDictionary(x => x.Name, x => x.Addresses());

        // A fourth machine from another tailnet on the same underlay link.
        var other = await mesh.Coordinator.CreateTailnet("elsewhere");
        await mesh.Coordinator.Send(HttpMethod.Post, $"/api/v1/tailnets/{other}/policy", """{ "tagOwners": { "tag:d": [] } }""");
        var dMachine = lab.AddNamespace("d");
        mesh.Segment.Attach(dMachine, "198.18.0.4/24");
        var d = WeftAgent.Start(dMachine, "d", mesh.Coordinator.Control, await mesh.Coordinator.CreateAuthKey(other, tags: ["tag:d"]));
        var dAddress = d.Addresses();

        // Every pair, both ways, over IPv4 and IPv6.
        foreach (var from in mesh.All)
        foreach (var to in mesh.All.Where(x => x != from))
        {
            Assert.True(Reaches(from, address[to.Name].V4), $"{from.Name} → {to.Name} over IPv4");
            Assert.Equal(3, Traffic.Ping(from.Machine, address[to.Name].V6, 3));
        }

        // The other tailnet's agent reaches none of them (addresses are per tailnet, so skip any it holds itself).
        d.WaitForPeers();
        foreach (var target in mesh.All.SelectMany(x => new[] { address[x.Name].V4, address[x.Name].V6 }).Where(t => t != dAddress.V4 && t != dAddress.V6))
            Assert.True(Blocked(d, target), $"d (another tailnet) must not reach {target}");
        Assert.DoesNotContain(a.Status().GetProperty("peers").EnumerateArray(), p => p.GetProperty("name").GetString() == "d");

        // status and ping through the CLI.
        var (statusCode, statusText) = a.Cli("status");
        Assert.True(statusCode == 0, statusText);
        Assert.Contains("state:        running", statusText);
        Assert.Matches(@"\nb\s+100\.64\.\S+ fd7a:115c:a1e0:\S+\s+yes\s+direct\s+198\.18\.0\.2:41641\s+\d{4}\s+(now|\d+s ago)\s+[\d.]+ (B|KiB|MiB)\s+[\d.]+ (B|KiB|MiB)", statusText);
        var (pingCode, pingText) = a.Cli("ping", "b", "-c", "2");
        Assert.True(pingCode == 0, pingText);
        Assert.Matches($@"pong from b \({address["b"].V4.Replace(".", "\\.")}\) via 198\.18\.0\.2:41641 in [\d.]+ ms", pingText);
        Assert.Contains("2 sent, 2 answered", pingText);
        var (v6Code, v6Text) = a.Cli("ping", address["c"].V6, "-c", "1");
        Assert.True(v6Code == 0, v6Text);
        var (missingCode, missingText) = a.Cli("ping", "nobody-here", "-c", "1");
        Assert.Equal(1, missingCode);
        Assert.Contains("no peer is called 'nobody-here'", missingText);

        // MagicDNS: <host>.<tailnet suffix> on the agent's own address.
        var bFqdn = a.Status().GetProperty("peers").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "b").GetProperty("fqdn").GetString()!.TrimEnd('.');
        Assert.Equal(address["b"].V4, a.Machine.Run("dig", "+short", "+time=2", "+tries=2", "@" + address["a"].V4, bFqdn, "A").Trim());
        Assert.Equal(address["b"].V6, a.Machine.Run("dig", "+short", "+time=2", "+tries=2", "@" + address["a"].V4, bFqdn, "AAAA").Trim());

        // Policy: a and c may no longer talk; b still talks to both. Then a one-way rule: the filter,
        // not visibility, refuses b → a while a → b (and its answers) pass.
        await mesh.Coordinator.Send(HttpMethod.Post, $"/api/v1/tailnets/{mesh.Tailnet}/policy", """
            {
              "tagOwners": { "tag:a": [], "tag:b": [], "tag:c": [] },
              "acls": [
                { "action": "accept", "src": ["tag:a", "tag:c"], "dst": ["tag:b:*"] },
                { "action": "accept", "src": ["tag:b"], "dst": ["tag:a:*", "tag:c:*"] },
              ],
            }
            """);
        a.WaitForPeers("b");
        c.WaitForPeers("b");
        Assert.True(Blocked(a, address["c"].V4), "a → c is forbidden");
        Assert.True(Blocked(c, address["a"].V4), "c → a is forbidden");
        Assert.True(Reaches(a, address["b"].V4));
        Assert.True(Reaches(c, address["b"].V4));
        Assert.True(Reaches(b, address["a"].V4));
        Assert.True(Reaches(b, address["c"].V4));

        await mesh.Coordinator.Send(HttpMethod.Post, $"/api/v1/tailnets/{mesh.Tailnet}/policy", """
            {
              "tagOwners": { "tag:a": [], "tag:b": [], "tag:c": [] },
              "acls": [
                { "action": "accept", "src": ["tag:a"], "dst": ["tag:b:*"] },
                { "action": "accept", "src": ["tag:b", "tag:c"], "dst": ["tag:c:*", "tag:b:*"] },
              ],
            }
            """);
        c.WaitForPeers("b");
        b.WaitForPeers("a", "c");
        Assert.True(WaitUntil(() => Blocked(b, address["a"].V4)), "b → a is now refused by a's filter");
        Assert.True(Reaches(a, address["b"].V4), "a → b still passes, and b's answers come back as return traffic");

        // Rotation during a continuous ping: b's new key reaches a, both re-handshake, at most two pings lost.
        var keyBefore = b.Status().GetProperty("nodeKey").GetString();
        var ping = Traffic.StartPing(a.Machine, address["b"].V4, 0.1);
        Thread.Sleep(1000);
        var rotatedAt = DateTimeOffset.UtcNow;
        var (rotateCode, rotateText) = b.Cli("rotate-node-key");
        Assert.True(rotateCode == 0, rotateText);
        Assert.True(WaitUntil(() => b.Status().GetProperty("nodeKey").GetString() != keyBefore), "b's node key rotates");
        var newKey = b.Status().GetProperty("nodeKey").GetString();
        Assert.True(WaitUntil(() => PeerOf(a, "b") is { } peer && peer.GetProperty("nodeKey").GetString() == newKey
            && peer.GetProperty("tunnel").TryGetProperty("lastHandshake", out var at) && at.GetDateTimeOffset() > rotatedAt),
            "a learns b's new key and handshakes with it");
        Thread.Sleep(1000);
        var (sent, received) = Traffic.StopPing(ping);
        Assert.True(sent - received <= 2, $"lost {sent - received} of {sent} pings across the rotation");

        // A deleted device is cut off at once: gone from b's netmap, its packets refused.
        var cId = c.Status().GetProperty("deviceId").GetString();
        await mesh.Coordinator.Send(HttpMethod.Delete, $"/api/v1/tailnets/{mesh.Tailnet}/devices/{cId}");
        b.WaitForPeers("a");
        Assert.True(Blocked(b, address["c"].V4), "b → deleted c");
        Assert.True(Blocked(c, address["b"].V4), "deleted c → b");

        // The data plane outlives the control plane: with the coordinator stopped, a restarted agent
        // brings its tunnels back from the cached netmap.
        mesh.Coordinator.Stop();
        a.Stop();
        a.Run();
        Assert.True(Reaches(a, address["b"].V4), "a restarted without a coordinator reaches b from its cached netmap");
        Assert.True(Blocked(b, address["a"].V4), "and the cached filter still refuses b → a");
        Assert.Contains("\"state\": \"connecting\"", a.Cli("status", "--json").Output);
    }

    [SkippableFact]
    public async Task The_daemon_and_its_cli_up_down_up_with_new_flags_logout_login_and_the_local_api_refuses_bad_requests_and_non_root_callers()
    {
        await using var lab = LabTest.Open("ping", "setpriv", "curl");
        var (coordinator, tailnet, machines) = await HubAndMachines(lab, "local", "x", "y");
        // x runs as a service does: the daemon, then `weft-agent up` against it.
        var x = WeftAgent.StartService(machines["x"], "x", coordinator.Control, await coordinator.CreateAuthKey(tailnet, user: "ops@example.com"));
        var y = WeftAgent.Start(machines["y"], "y", coordinator.Control, await coordinator.CreateAuthKey(tailnet, user: "ops@example.com"));
        x.WaitForPeers("y");
        var yAddress = y.Addresses().V4;
        Assert.True(Reaches(x, yAddress));

        // The local API is HTTP on the socket: curl works, and every refusal is JSON with a code.
        var socket = Path.Combine(x.StateDirectory, "weft-agent.sock");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket));
        Assert.Contains("\"state\": \"running\"", Curl(socket, "GET", "status"));
        // The agent's metrics, as Prometheus text: per peer the path, bytes each way and handshakes (x has reached y).
        var metrics = Curl(socket, "GET", "metrics");
        Assert.Matches("""weft_agent_peer_handshakes_total\{[^}]*peer="y"[^}]*\} [1-9]""", metrics);
        Assert.Matches("""weft_agent_peer_received_bytes_total\{[^}]*path="(direct|relay)"[^}]*\} [1-9]""", metrics);
        Assert.Matches("""weft_agent_control_connected(\{[^}]*\})? 1""", metrics);
        Assert.Contains("\"code\": \"unknown_command\"", Curl(socket, "GET", "fly"));
        Assert.Contains("\"code\": \"malformed_request\"", Curl(socket, "POST", "up", "{\"loginServer\": "));
        Assert.Contains("\"code\": \"malformed_request\"", Curl(socket, "POST", "ping", "{\"count\":1000,\"target\":\"y\"}"));
        Assert.Contains("\"code\": \"request_too_large\"", Curl(socket, "POST", "up", "{\"hostname\":\"" + new string('x', 5000) + "\"}"));

        // Not root: the socket's mode stops the caller; loosened, the daemon still refuses by credentials.
        var (deniedCode, denied) = x.CliAs("65534", "status");
        Assert.Equal(1, deniedCode);
        Assert.Contains("root only", denied);
        File.SetUnixFileMode(socket, (UnixFileMode)0b110_110_110);
        var (refusedCode, refused) = x.CliAs("65534", "status", "--json");
        Assert.Equal(1, refusedCode);
        Assert.Contains("\"code\": \"forbidden\"", refused);
        Assert.Contains("the agent's local API is for root only (you are uid 65534)", refused);
        File.SetUnixFileMode(socket, UnixFileMode.UserRead | UnixFileMode.UserWrite);

        // up on a running daemon reconfigures it; it never says "already runs". Errors are JSON with --json.
        var (againCode, again) = x.Cli("up", "--json");
        Assert.True(againCode == 0, again);
        Assert.Contains("\"state\": \"running\"", again);
        var (badCode, bad) = x.Cli("up", "--login-server", "ftp://nowhere", "--json");
        Assert.Equal(2, badCode);
        Assert.Contains("\"code\": \"invalid_flags\"", bad);

        // down takes the tunnels away, and the daemon stays; up with a new flag brings them back with it.
        var (downCode, down) = x.Cli("down");
        Assert.True(downCode == 0, down);
        Assert.Contains("stopped", down);
        Assert.True(Blocked(x, yAddress), "no tunnels while down");
        var (upCode, up) = x.Cli("up", "--advertise-routes", "198.51.100.0/24");
        Assert.True(upCode == 0, up);
        Assert.Contains("running", up);
        Assert.True(Reaches(x, yAddress), "up again");
        Assert.True(WaitUntil(() => PeerOf(y, "x") is { } peer && peer.GetProperty("tunnel").ValueKind == JsonValueKind.Object), "y still has its tunnel to x");
        Assert.Contains("198.51.100.0/24", x.Status().GetProperty("self").GetProperty("advertisedRoutes").ToString());

        // logout: the coordinator expires the device, y drops it, and x waits for a login.
        var (logoutCode, loggedOut) = x.Cli("logout");
        Assert.True(logoutCode == 0, loggedOut);
        Assert.Contains("logged out", loggedOut);
        y.WaitForPeers();
        Assert.Contains("\"state\": \"needs-login\"", x.Cli("status", "--json").Output);

        // login with a new key, on the same daemon process: back in the mesh.
        var (loginCode, login) = x.Cli("login", "--auth-key", await coordinator.CreateAuthKey(tailnet, user: "ops@example.com"));
        Assert.True(loginCode == 0, login);
        Assert.Contains("running", login);
        y.WaitForPeers("x");
        x.WaitForPeers("y");
        Assert.True(Reaches(x, yAddress), "x reaches y after logging in again");
        var (statusCode, status) = x.Cli("status");
        Assert.True(statusCode == 0, status);
        Assert.Matches(@"machine key:\s+mkey:[0-9a-f]{64}", status);
        Assert.Matches(@"node key:\s+nodekey:[0-9a-f]{64}", status);

        // A restarted daemon comes back logged in, from its prefs, with no key given.
        x.Stop();
        x.Run();
        Assert.True(WaitUntil(() => x.Status().GetProperty("state").GetString() == "running"), "running after the daemon's restart");
        Assert.True(Reaches(x, yAddress), "x reaches y after its daemon restarted");

        // Its interface deleted under it, the daemon cannot run on (every tunnel is dead, its addresses
        // and routes gone): it exits with an error, for the service manager to start it again, and the
        // new daemon creates the interface afresh.
        machines["x"].Run("ip", "link", "del", "weft0");
        Assert.Equal(1, x.Process!.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.Contains("the TUN interface weft0 was deleted", x.Process.Output);
        x.Run();
        Assert.True(Reaches(x, yAddress), "x reaches y once its daemon started again after losing its interface");
    }

    [SkippableFact]
    public async Task MagicDns_becomes_the_namespaces_resolver_short_names_resolve_other_names_go_upstream_down_restores_the_file_and_a_rewrite_is_taken_over()
    {
        await using var lab = LabTest.Open("ping", "dig", "getent");
        var (coordinator, tailnet, machines) = await HubAndMachines(lab, "names", "a", "b");
        // The resolver the machine had: an upstream in the lab (on the hub) that knows example.test.
        using var upstream = LabDnsServer.Start(new System.Net.IPEndPoint(System.Net.IPAddress.Parse(Hub), 53), "example.test", "198.18.0.99");
        const string original = "# the machine's own resolver\nnameserver 198.18.0.254\nsearch lab.example\noptions edns0\n";
        File.WriteAllText(machines["a"].ResolvConf, original);
        var a = WeftAgent.Start(machines["a"], "a", coordinator.Control, await coordinator.CreateAuthKey(tailnet));
        var b = WeftAgent.Start(machines["b"], "b", coordinator.Control, await coordinator.CreateAuthKey(tailnet));
        a.WaitForPeers("b");
        var bAddress = b.Addresses().V4;
        var bFqdn = a.Status().GetProperty("peers").EnumerateArray().Single().GetProperty("fqdn").GetString()!.TrimEnd('.');
        var aAddress = a.Addresses().V4;

        await LabTest.WithLogsOnFailure(lab, "magicdns", () =>
        {
            // The namespace's /etc/resolv.conf now names MagicDNS, with the tailnet's suffix searched first.
            Assert.True(WaitUntil(() => File.ReadAllText(machines["a"].ResolvConf).Contains("nameserver " + aAddress)), File.ReadAllText(machines["a"].ResolvConf));
            Assert.Contains($"search {bFqdn[(bFqdn.IndexOf('.') + 1)..]} lab.example", File.ReadAllText(machines["a"].ResolvConf));
            Assert.Contains(bAddress, a.Machine.Run("getent", "ahostsv4", "b"));          // a short name, through the search domain
            Assert.Contains(bAddress, a.Machine.Run("getent", "ahostsv4", bFqdn));        // the full name
            Assert.Equal("198.18.0.99", a.Machine.Run("dig", "+short", "+time=2", "+tries=2", "example.test", "A").Trim()); // forwarded upstream
            Assert.True(upstream.Asked > 0, "the upstream was asked");

            var (statusCode, status) = a.Cli("dns", "status", "--json");
            Assert.True(statusCode == 0, status);
            using (var json = JsonDocument.Parse(status))
            {
                var system = json.RootElement.GetProperty("system");
                Assert.Equal("resolv.conf", system.GetProperty("mode").GetString());
                Assert.Equal(["198.18.0.254:53"], system.GetProperty("upstreams").EnumerateArray().Select(u => u.GetString()));
            }

            // down puts the machine's file back as it was; up takes it over again.
            var (downCode, down) = a.Cli("down");
            Assert.True(downCode == 0, down);
            Assert.Equal(original, File.ReadAllText(machines["a"].ResolvConf));
            var (upCode, up) = a.Cli("up");
            Assert.True(upCode == 0, up);
            Assert.True(WaitUntil(() => File.ReadAllText(machines["a"].ResolvConf).Contains("nameserver " + aAddress)), "taken over again after up");
            Assert.Contains(bAddress, a.Machine.Run("getent", "ahostsv4", "b"));

            // --accept-dns=false leaves the file alone while up; and the agent's exit restores it too.
            var (setCode, set) = a.Cli("set", "--accept-dns=false");
            Assert.True(setCode == 0, set);
            Assert.Equal(original, File.ReadAllText(machines["a"].ResolvConf));
            Assert.Equal(bAddress, a.Machine.Run("dig", "+short", "+time=2", "+tries=2", "@" + aAddress, bFqdn, "A").Trim()); // still answers when asked
            a.Cli("set", "--accept-dns=true");
            Assert.True(WaitUntil(() => File.ReadAllText(machines["a"].ResolvConf).Contains("nameserver " + aAddress)), "taken over again after --accept-dns=true");

            // A DHCP client renews its lease and rewrites the file, with the network's new nameserver: within the
            // data plane's next check (10 s) MagicDNS takes it over again, forwarding to that nameserver now.
            const string renewed = "# dhclient\nnameserver 198.18.0.253\nsearch lab.example\n";
            File.WriteAllText(machines["a"].ResolvConf, renewed);
            Assert.True(WaitUntil(() => File.ReadAllText(machines["a"].ResolvConf).Contains("nameserver " + aAddress)), "taken over again after another program rewrote it");
            Assert.Contains(bAddress, a.Machine.Run("getent", "ahostsv4", "b"));
            var (renewedCode, renewedStatus) = a.Cli("dns", "status", "--json");
            Assert.True(renewedCode == 0, renewedStatus);
            using (var json = JsonDocument.Parse(renewedStatus))
                Assert.Equal(["198.18.0.253:53"], json.RootElement.GetProperty("system").GetProperty("upstreams").EnumerateArray().Select(u => u.GetString()));

            // The agent's exit puts back what the machine had last: the rewritten file.
            a.Stop();
            Assert.Equal(renewed, File.ReadAllText(machines["a"].ResolvConf));
            return Task.CompletedTask;
        });
    }

    /// <summary>One local API call with curl (<c>curl --unix-socket</c>), as a script would make it; returns the JSON answer.</summary>
    private static string Curl(string socket, string method, string command, string? body = null)
    {
        var info = new System.Diagnostics.ProcessStartInfo("curl") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = body is not null };
        foreach (var argument in new[] { "--silent", "--show-error", "--unix-socket", socket, "-X", method, "http://local/localapi/v0/" + command })
            info.ArgumentList.Add(argument);
        if (body is not null)
            foreach (var argument in new[] { "-H", "Content-Type: application/json", "--data-binary", "@-" }) info.ArgumentList.Add(argument);
        using var process = System.Diagnostics.Process.Start(info)!;
        if (body is not null)
        {
            process.StandardInput.Write(body);
            process.StandardInput.Close();
        }
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit(30_000);
        return output;
    }

    private static JsonElement? PeerOf(WeftAgent agent, string name)
    {
        foreach (var peer in agent.Status().GetProperty("peers").EnumerateArray())
            if (peer.GetProperty("name").GetString() == name) return peer;
        return null;
    }

    private static bool WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (DateTime.UtcNow < deadline)
        {
            if (condition()) return true;
            Thread.Sleep(250);
        }
        return false;
    }
}
