using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Weft.Lab;

namespace Weft.Integration.Tests.Mesh;

/// <summary>
/// The NAT lab: a "public" segment (198.18.0.0/24) with the coordinator (on the host), two meshed
/// relays with STUN servers (one region, two nodes), and NAT routers, each with a LAN of its own in
/// 198.19.0.0/16 and an agent with a real TUN behind it. Routers are easy (masquerade: one mapping
/// for every destination), hard (masquerade random: a mapping per destination) or UDP-blocked.
/// <list type="bullet">
/// <item>easy↔easy: the first ping goes through the relay, then the path turns direct;</item>
/// <item>easy↔hard and hard↔hard: relayed (a direct path would need port prediction, which Weft does not do), traffic flows;</item>
/// <item>UDP blocked: relayed over TCP, traffic flows;</item>
/// <item>the relay that everyone uses is killed: clients move to the other node and traffic resumes;</item>
/// <item>a host moves behind another router: a continuous ping recovers and the path turns direct again;</item>
/// <item>path MTU: the third easy router's LAN links carry 1400 bytes, the rest 1500. Each direct path
/// proves what it carries (1340 or 1440 bytes inside), the TUN follows the largest, and a packet too
/// big for its peer's path gets an ICMP "too big" back instead of vanishing.</item>
/// </list>
/// With <c>WEFT_NAT_BENCH_OUT</c> set (bench/nat/run), it also measures over several rounds and writes the figures there.
/// </summary>
public class NatLabTests
{
    private const string Hub = "198.18.0.254";
    private const string Relay1 = "198.18.0.11", Relay2 = "198.18.0.12";
    private const int SmallLinkMtu = 1400;
    private const int SmallPathMtu = SmallLinkMtu - 28 - 32, FullPathMtu = 1500 - 28 - 32; // less IPv4 + UDP, and WireGuard
    private const string MeshKey = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

    [SkippableFact]
    public async Task Agents_behind_easy_hard_and_udp_blocked_nats_go_direct_where_they_can_and_through_the_relays_otherwise()
    {
        await using var lab = LabTest.Open("ping", "nft", "iperf3");
        var segment = Segment.Create(lab);
        segment.AttachHost(Hub + "/24");
        // The API on the lab segment too: the separate relays ask it about access.
        var coordinator = WeftCoordinator.Start(lab, Hub, RelayMap(), apiAddress: Hub);
        await LabTest.WithLogsOnFailure(lab, "nat", () => Scenario(lab, segment, coordinator));
    }

    /// <summary>The coordinator runs no relay of its own: the map is region 1 with the two lab relays, relay 1 first.</summary>
    private static Dictionary<string, string> RelayMap() => new()
    {
        ["Weft__Relay__Embedded"] = "false",
        ["Weft__Relay__Regions__0__Id"] = "1",
        ["Weft__Relay__Regions__0__Code"] = "lab",
        ["Weft__Relay__Regions__0__Nodes__0__Name"] = "relay1",
        ["Weft__Relay__Regions__0__Nodes__0__Host"] = Relay1,
        ["Weft__Relay__Regions__0__Nodes__1__Name"] = "relay2",
        ["Weft__Relay__Regions__0__Nodes__1__Host"] = Relay2,
    };

    private static async Task Scenario(Lab.Lab lab, Segment segment, WeftCoordinator coordinator)
    {
        var figures = new NatFigures();
        var relayMachines = new[] { ("r1", Relay1, Relay2), ("r2", Relay2, Relay1) }.Select(r =>
        {
            var machine = lab.AddNamespace(r.Item1);
            segment.Attach(machine, r.Item2 + "/24");
            return (Machine: machine, Name: r.Item1, Peer: r.Item3);
        }).ToList();
        var relays = relayMachines.Select(r => WeftRelay.Start(r.Machine, r.Name, coordinator.TicketIssuer, MeshKey, coordinator.Api, r.Peer + ":3340")).ToList();

        var easy1 = NatRouter.Create(lab, segment, "ne1", "198.18.0.1", 1, NatKind.Easy);
        var easy2 = NatRouter.Create(lab, segment, "ne2", "198.18.0.2", 2, NatKind.Easy);
        var hard1 = NatRouter.Create(lab, segment, "nh1", "198.18.0.3", 3, NatKind.Hard);
        var hard2 = NatRouter.Create(lab, segment, "nh2", "198.18.0.4", 4, NatKind.Hard);
        var blocked = NatRouter.Create(lab, segment, "nb", "198.18.0.5", 5, NatKind.UdpBlocked);
        var easy3 = NatRouter.Create(lab, segment, "ne3", "198.18.0.6", 6, NatKind.Easy);

        var machines = new Dictionary<string, Namespace>();
        string Host(string name, NatRouter router, int? mtu = null)
        {
            var machine = lab.AddNamespace(name);
            machines[name] = machine;
            return router.Attach(machine, mtu: mtu).Interface;
        }
        Host("e1", easy1);
        var e2Home = Host("e2", easy2);
        Host("e4", easy3, SmallLinkMtu);
        var e2Machine = machines["e2"];
        var (e2Roam, _) = easy3.Attach(e2Machine, makeDefault: false, mtu: SmallLinkMtu);
        e2Machine.Run("ip", "link", "set", e2Roam, "down");
        Host("h1", hard1);
        Host("h2", hard2);
        Host("b1", blocked);

        var tailnet = await coordinator.CreateTailnet("nat");
        var agents = new Dictionary<string, WeftAgent>();
        foreach (var name in machines.Keys)
        {
            // e4 shares easy3 with e2 after the move: on the same port they would contend for easy3's
            // mappings and make each other's NAT look hard.
            string[] port = name == "e4" ? ["--port", "41642"] : [];
            agents[name] = WeftAgent.Start(machines[name], name, coordinator.Control, await coordinator.CreateAuthKey(tailnet), port);
        }
        foreach (var (name, agent) in agents) agent.WaitForPeers([.. agents.Keys.Where(n => n != name)]);
        var address = agents.ToDictionary(a => a.Key, a => a.Value.Addresses().V4);

        // netcheck tells the three kinds of NAT apart.
        Assert.Equal("easy", (await Netcheck(agents["e1"])).GetProperty("natKind").GetString());
        Assert.Equal("hard", (await Netcheck(agents["h1"])).GetProperty("natKind").GetString());
        var blockedReport = await Netcheck(agents["b1"]);
        Assert.Equal("udp-blocked", blockedReport.GetProperty("natKind").GetString());
        var (netcheckCode, netcheckText) = agents["e1"].Cli("netcheck");
        Assert.True(netcheckCode == 0, netcheckText);
        Assert.Contains("NAT mapping:    easy", netcheckText);
        Assert.Matches(@"region 1\s+lab\s+[\d.]+ ms\s+198\.18\.0\.1:\d+", netcheckText);

        // easy ↔ easy: the first packet through the relay at once, then direct.
        var (first, _) = await FirstPing(agents["e1"], "e2");
        figures.FirstPacketMs.Add(first);
        Assert.True(await UntilPath(agents["e1"], "e2", "direct", TimeSpan.FromSeconds(15)) is not null, "e1 → e2 (easy ↔ easy) must turn direct");
        Assert.True(await UntilPath(agents["e2"], "e1", "direct", TimeSpan.FromSeconds(10)) is not null, "e2 → e1 must be direct too");
        var (_, pingText) = agents["e1"].Cli("ping", "e2", "-c", "2");
        Assert.Matches(@"pong from e2 \(100\.64\.\S+\) via 198\.18\.0\.2:\d+", pingText);
        var (_, statusText) = agents["e1"].Cli("status");
        Assert.Matches(@"\ne2\s+100\.64\.\S+ \S+\s+yes\s+direct\s+198\.18\.0\.2:\d+", statusText);

        // Path MTU: e1 reaches e2 over 1500-byte links and e4 over a 1400-byte one (behind easy3).
        Assert.True(await UntilPath(agents["e1"], "e4", "direct", TimeSpan.FromSeconds(15)) is not null, "e1 → e4 (easy ↔ easy) must turn direct");
        Assert.True(await UntilMtu(agents["e1"], "e2", FullPathMtu, TimeSpan.FromSeconds(15)), $"e1 → e2 must prove {FullPathMtu} bytes");
        Assert.True(await UntilMtu(agents["e1"], "e4", SmallPathMtu, TimeSpan.FromSeconds(15)), $"e1 → e4 must prove {SmallPathMtu} bytes");
        Assert.True(await UntilMtu(agents["e4"], "e1", SmallPathMtu, TimeSpan.FromSeconds(15)), $"e4 → e1 must prove {SmallPathMtu} bytes");
        var (_, mtuStatus) = agents["e1"].Cli("status");
        Assert.Matches($@"\ne4\s+100\.64\.\S+ \S+\s+yes\s+direct\s+198\.18\.0\.6:\d+\s+{SmallPathMtu} ", mtuStatus);
        // Full-size packets cross to e2 (the TUN's MTU was raised for it), and packets that fit e4's path cross to e4.
        var fullToE2 = Traffic.PingDontFragment(machines["e1"], address["e2"], FullPathMtu - 28, 3);
        Assert.True(Traffic.Answered(fullToE2) == 3, fullToE2);
        var fitsE4 = Traffic.PingDontFragment(machines["e1"], address["e4"], SmallPathMtu - 28, 3);
        Assert.True(Traffic.Answered(fitsE4) == 3, fitsE4);
        // A bigger one to e4 fits e1's TUN (raised for e2) but not e4's path: e1's engine answers it with
        // an ICMP "fragmentation needed" naming e4's path MTU, as a router would; it is not lost without a word.
        var tooBig = Traffic.PingDontFragment(machines["e1"], address["e4"], FullPathMtu - 28, 2);
        Assert.Contains($"Frag needed and DF set (mtu = {SmallPathMtu})", tooBig);
        // TCP over the smaller path.
        figures.SmallPathMbit = Traffic.Iperf(machines["e4"], address["e4"], machines["e1"], TimeSpan.FromSeconds(2));
        Assert.True(figures.SmallPathMbit > 0, "iperf3 over the 1400-byte path moved no data");

        // Pairs with a hard NAT or blocked UDP stay on the relay, and traffic flows.
        foreach (var (from, to) in new[] { ("e1", "h1"), ("h1", "h2"), ("b1", "e1"), ("h2", "b1") })
        {
            var (ms, via) = await FirstPing(agents[from], to);
            figures.FirstPacketMs.Add(ms);
            Assert.Equal("relay:1", via);
            Assert.Equal(5, Traffic.Ping(agents[from].Machine, address[to], 5));
            Assert.Equal("relay", await AgentApi.PathTo(agents[from], to));
        }

        // Throughput: direct (easy ↔ easy) and relayed (hard ↔ hard).
        figures.DirectMbit = Traffic.Iperf(machines["e2"], address["e2"], machines["e1"], TimeSpan.FromSeconds(2));
        figures.RelayMbit = Traffic.Iperf(machines["h2"], address["h2"], machines["h1"], TimeSpan.FromSeconds(2));
        Assert.True(figures.RelayMbit > 0, "iperf3 through the relay moved no data");

        // Node-key rotation under a continuous ping loses at most two packets, on a direct and on a relayed path.
        foreach (var (from, to) in new[] { ("e1", "e2"), ("h1", "h2") })
        {
            var rotationPing = Traffic.StartPing(machines[from], address[to], 0.05);
            await Task.Delay(1000);
            var (rotateCode, rotateText) = agents[to].Cli("rotate-node-key");
            Assert.True(rotateCode == 0, rotateText);
            await Task.Delay(4000);
            var (rotationSent, rotationReceived) = Traffic.StopPing(rotationPing);
            figures.RotationLost.Add(rotationSent - rotationReceived);
            Assert.True(rotationSent - rotationReceived <= 2, $"{from} → {to}: a node-key rotation lost {rotationSent - rotationReceived} of {rotationSent} pings");
        }

        // Relay failover: the relay everyone is on dies; clients move to the other node of the region.
        relays[0].Stop(TimeSpan.FromSeconds(5), "KILL");
        var failover = Stopwatch.StartNew();
        Assert.True(Traffic.PingUntilAnswered(machines["h1"], address["h2"], TimeSpan.FromSeconds(30)) is not null, "h1 → h2 must resume through relay 2");
        Assert.True(Traffic.PingUntilAnswered(machines["b1"], address["e1"], TimeSpan.FromSeconds(30)) is not null, "b1 → e1 must resume through relay 2");
        figures.FailoverMs = failover.Elapsed.TotalMilliseconds;

        // Roaming: e2 moves from behind easy2 to behind easy3 while e1 pings it without pause.
        var ping = Traffic.StartPing(machines["e1"], address["e2"], 0.1);
        await Task.Delay(1000);
        e2Machine.Run("ip", "link", "set", e2Home, "down");
        e2Machine.Run("ip", "link", "set", e2Roam, "up");
        e2Machine.Run("ip", "route", "replace", "default", "via", easy3.Gateway, "dev", e2Roam);
        var moved = Stopwatch.StartNew();
        var back = await UntilPath(agents["e1"], "e2", "direct", TimeSpan.FromSeconds(40), requireEndpoint: "198.18.0.6:");
        Assert.True(back is not null, "after e2 moved, e1's path to it must turn direct to its new address");
        Assert.True(await UntilMtu(agents["e1"], "e2", SmallPathMtu, TimeSpan.FromSeconds(15)), $"after e2 moved behind the 1400-byte link, e1 → e2 must prove {SmallPathMtu} bytes");
        await Task.Delay(1500);
        var (sent, received) = Traffic.StopPing(ping);
        figures.RoamRecoveryMs = moved.Elapsed.TotalMilliseconds - 1500;
        Assert.True(received > 0 && Traffic.Ping(machines["e1"], address["e2"], 5) == 5, $"the ping to e2 must recover after the move ({received}/{sent})");

        // Restarted agents: from the moment one is up again, how long until its first packet is answered
        // (through the relay) and until the path is direct. One round here; bench/nat/run asks for more.
        var rounds = int.TryParse(Environment.GetEnvironmentVariable("WEFT_NAT_BENCH_ROUNDS"), out var r) ? r : 1;
        for (var round = 0; round < rounds; round++)
        {
            agents["e1"].Stop();
            agents["h1"].Stop();
            agents["h1"].Run();
            agents["e1"].Run();
            var started = Stopwatch.StartNew();
            while (await AgentApi.PathTo(agents["e1"], "e2") is null && started.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(20);
            // From here the agent holds its peer and could send: the relay-to-direct clock starts with the first packet.
            var peerKnown = Stopwatch.StartNew();
            var (again, _) = await FirstPing(agents["e1"], "e2");
            figures.FirstPacketMs.Add(again);
            var turned = await UntilPath(agents["e1"], "e2", "direct", TimeSpan.FromSeconds(15));
            figures.ShouldBeDirect++;
            if (turned is not null)
            {
                figures.DirectAfterMs.Add(peerKnown.Elapsed.TotalMilliseconds);
                figures.StartToDirectMs.Add(started.Elapsed.TotalMilliseconds);
                figures.DirectPairs++;
            }
            var (relayed, via) = await FirstPing(agents["h1"], "h2");
            Assert.Equal("relay:1", via);
            figures.FirstPacketMs.Add(relayed);
        }
        Assert.Equal(figures.ShouldBeDirect, figures.DirectPairs);

        // Every relay login was checked with the coordinator across the lab network: none got in on its signature alone.
        foreach (var relay in relays) Assert.DoesNotContain("on its ticket alone", relay.Output);
        var metrics = await coordinator.Http.GetStringAsync("/metrics");
        var accessQueries = metrics.Split('\n')
            .Where(line => line.StartsWith("http_server_request_duration_seconds_count{", StringComparison.Ordinal)
                && line.Contains("http_route=\"/relay/access\"") && line.Contains("http_response_status_code=\"200\""))
            .Sum(line => double.Parse(line[(line.LastIndexOf('}') + 1)..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(accessQueries > 0, "the relays' access queries never reached the coordinator");

        Console.WriteLine(figures.Summary());
        if (Environment.GetEnvironmentVariable("WEFT_NAT_BENCH_OUT") is { Length: > 0 } output)
        {
            File.WriteAllText(output, figures.Summary() + "\n");
            File.WriteAllText(output + ".log", lab.ProcessOutputs());
        }
    }

    private static async Task<JsonElement> Netcheck(WeftAgent agent)
    {
        var report = await AgentApi.Query(agent, "netcheck");
        Assert.True(report.TryGetProperty("natKind", out _), $"{agent.Name}: netcheck answered {report}");
        return report;
    }

    /// <summary>The first ping to a peer: its round trip (handshake included, when one is needed) and the path it came back on.</summary>
    private static async Task<(double Ms, string? Via)> FirstPing(WeftAgent agent, string peer)
    {
        // The peer must be in the engine first (a tunnel, even without a session yet): a netmap shown by status may not be applied yet.
        var known = Stopwatch.StartNew();
        while (await AgentApi.PathTo(agent, peer) is null or "none" && known.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(20);
        var answer = await AgentApi.Query(agent, "ping", new NodeAgent.Agent.PingRequest { Target = peer, Count = 1, TimeoutMs = 5000 });
        Assert.True(answer.TryGetProperty("replies", out var replies), $"{agent.Name} → {peer}: {answer}");
        var reply = replies[0];
        Assert.True(reply.TryGetProperty("milliseconds", out var ms) && ms.ValueKind == JsonValueKind.Number, $"{agent.Name} → {peer}: the first ping was not answered: {answer}");
        return (ms.GetDouble(), reply.TryGetProperty("via", out var via) ? via.GetString() : null);
    }

    /// <summary>Polls the agent's path MTU to a peer (with traffic, so its path finder is awake) until it is <paramref name="mtu"/>.</summary>
    private static async Task<bool> UntilMtu(WeftAgent agent, string peer, int mtu, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (await AgentApi.PathMtu(agent, peer) == mtu) return true;
            await AgentApi.Query(agent, "ping", new NodeAgent.Agent.PingRequest { Target = peer, Count = 1, TimeoutMs = 900 });
            await Task.Delay(200);
        }
        return false;
    }

    /// <summary>Polls the agent's path to a peer (with traffic, so its path finder is awake) until it is <paramref name="kind"/>; the time it took, or null.</summary>
    private static async Task<double?> UntilPath(WeftAgent agent, string peer, string kind, TimeSpan timeout, string? requireEndpoint = null)
    {
        var clock = Stopwatch.StartNew();
        var lastPing = TimeSpan.Zero;
        while (clock.Elapsed < timeout)
        {
            if (await AgentApi.PathAndEndpoint(agent, peer) is { } path && path.Path == kind
                && (requireEndpoint is null || path.Endpoint?.StartsWith(requireEndpoint, StringComparison.Ordinal) == true))
                return clock.Elapsed.TotalMilliseconds;
            if (clock.Elapsed - lastPing > TimeSpan.FromSeconds(1))
            {
                lastPing = clock.Elapsed;
                _ = AgentApi.Query(agent, "ping", new NodeAgent.Agent.PingRequest { Target = peer, Count = 1, TimeoutMs = 900 });
            }
            await Task.Delay(20);
        }
        return null;
    }

    private sealed class NatFigures
    {
        public List<double> FirstPacketMs { get; } = [];
        /// <summary>From the restarted agent holding its peer (its first packet can go) until the path is direct.</summary>
        public List<double> DirectAfterMs { get; } = [];

        /// <summary>From the agent process's start until the path is direct: process start, registration and the map included.</summary>
        public List<double> StartToDirectMs { get; } = [];
        public int DirectPairs { get; set; }
        public int ShouldBeDirect { get; set; }
        public double RelayMbit { get; set; }
        public double DirectMbit { get; set; }
        public double SmallPathMbit { get; set; }
        public double FailoverMs { get; set; }
        public double RoamRecoveryMs { get; set; }
        public List<int> RotationLost { get; } = [];

        private static double P50(List<double> values) => values.Count == 0 ? double.NaN : values.Order().ElementAt(values.Count / 2);

        public string Summary() => string.Create(CultureInfo.InvariantCulture,
            $"nat: first_packet_ms_p50={P50(FirstPacketMs):0.0} direct_after_ms_easy_p50={P50(DirectAfterMs):0} start_to_direct_ms_p50={P50(StartToDirectMs):0} direct_rate={DirectPairs}/{ShouldBeDirect} relay_mbit={RelayMbit:0} " +
            $"direct_mbit={DirectMbit:0} relay_to_direct={RelayMbit / DirectMbit:0.00} small_mtu_path_mbit={SmallPathMbit:0} failover_ms={FailoverMs:0} roam_recovery_ms={RoamRecoveryMs:0} rotation_lost={string.Join('+', RotationLost)} samples={FirstPacketMs.Count}/{DirectAfterMs.Count}");
    }
}
