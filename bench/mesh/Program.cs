// Mesh benchmark. In one run, on this machine:
//  1. a coordinator process and two agents (weft-agent up) in two namespaces on one underlay link:
//     the time from starting the second agent to the first answered ping over the tailnet, then
//     iperf3 TCP both ways between their tailnet addresses (through the policy filter, default allow-all);
//  2. the baseline: two wireguard-go tunnels configured by hand with wg, same MTU (1280), same link.
// Last line: mesh: agents=<Mbit/s> wggo=<Mbit/s> ratio=<agents/wggo> join_to_first_ping_ms=<ms>
//
// Usage: weft-bench-mesh [--seconds N] (iperf3 seconds per direction, default 10)

using System.Diagnostics;
using System.Text.Json;
using Weft.Lab;

var seconds = args.Length >= 2 && args[0] == "--seconds" ? int.Parse(args[1]) : 10;
const int Mtu = 1280;
Lab.RemoveLeftovers();

var (agents, joinMs) = await Agents();
var wggo = await WireGuardGo();
Console.WriteLine($"agents (weft-agent up, through the coordinator): {agents.Forward:F0} / {agents.Reverse:F0} Mbit/s (mean {agents.Mean:F0})");
Console.WriteLine($"wireguard-go by hand (MTU {Mtu}):             {wggo.Forward:F0} / {wggo.Reverse:F0} Mbit/s (mean {wggo.Mean:F0})");
Console.WriteLine($"second agent started -> first ping answered: {joinMs:F0} ms (includes the agent process start)");
Console.WriteLine($"mesh: agents={agents.Mean:F0} wggo={wggo.Mean:F0} ratio={agents.Mean / wggo.Mean:F2} join_to_first_ping_ms={joinMs:F0}");
return 0;

async Task<((double Forward, double Reverse, double Mean) Throughput, double JoinMs)> Agents()
{
    await using var lab = Lab.Create();
    var segment = Segment.Create(lab);
    segment.AttachHost("198.18.0.254/24");
    await using var coordinator = WeftCoordinator.Start(lab, "198.18.0.254");
    var tailnet = await coordinator.CreateTailnet("bench");
    var key = await coordinator.CreateAuthKey(tailnet, user: "bench@example.com");
    var nsA = lab.AddNamespace("a");
    var nsB = lab.AddNamespace("b");
    segment.Attach(nsA, "198.18.0.1/24");
    segment.Attach(nsB, "198.18.0.2/24");
    var a = WeftAgent.Start(nsA, "a", coordinator.Control, key);
    a.Addresses();

    var clock = Stopwatch.StartNew();
    var b = WeftAgent.Start(nsB, "b", coordinator.Control, key);
    string? address = null;
    while (address is null)
    {
        var devices = await coordinator.Http.GetStringAsync($"/api/v1/tailnets/{tailnet}/devices");
        using var document = JsonDocument.Parse(devices);
        var items = document.RootElement.ValueKind == JsonValueKind.Array ? document.RootElement : document.RootElement.EnumerateObject().First(p => p.Value.ValueKind == JsonValueKind.Array).Value;
        address = items.EnumerateArray().Where(d => d.GetProperty("name").GetString() == "b")
            .Select(d => d.GetProperty("addresses")[0].GetString()!.Split('/')[0]).FirstOrDefault();
        if (clock.Elapsed > TimeSpan.FromSeconds(60)) throw new InvalidOperationException("b never registered");
    }
    while (Traffic.Ping(nsA, address, 1, waitSeconds: 1) != 1)
    {
        if (clock.Elapsed > TimeSpan.FromSeconds(60)) throw new InvalidOperationException($"b ({address}) never answered a ping:\n{lab.ProcessOutputs()}");
    }
    var joinMs = clock.Elapsed.TotalMilliseconds;
    GC.KeepAlive(b);

    var duration = TimeSpan.FromSeconds(seconds);
    var forward = Traffic.Iperf(nsB, address, nsA, duration);
    var reverse = Traffic.Iperf(nsB, address, nsA, duration, reverse: true);
    return ((forward, reverse, (forward + reverse) / 2), joinMs);
}

async Task<(double Forward, double Reverse, double Mean)> WireGuardGo()
{
    await using var lab = Lab.Create();
    var pair = WireGuardPair.Start(lab, WgImplementation.WireGuardGo, WgImplementation.WireGuardGo);
    var (nsA, nsB) = (pair.A.Namespace, pair.B.Namespace);
    nsA.Run("ip", "link", "set", pair.A.Name, "mtu", Mtu.ToString());
    nsB.Run("ip", "link", "set", pair.B.Name, "mtu", Mtu.ToString());
    if (Traffic.PingUntilAnswered(nsA, "100.64.0.2", TimeSpan.FromSeconds(20)) is null) throw new InvalidOperationException("wireguard-go pair: no tunnel");
    var duration = TimeSpan.FromSeconds(seconds);
    var forward = Traffic.Iperf(nsB, "100.64.0.2", nsA, duration);
    var reverse = Traffic.Iperf(nsB, "100.64.0.2", nsA, duration, reverse: true);
    return (forward, reverse, (forward + reverse) / 2);
}
