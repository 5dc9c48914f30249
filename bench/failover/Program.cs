// The failover benchmark: what agents and admin clients see when a coordinator node is killed, comes
// back, and when every node restarts in turn (a rolling upgrade), on three nodes and PostgreSQL.
using System.Diagnostics;
using System.Text.Json;
using Weft.Cluster.Cli;
using Weft.ClusterLab;
using Weft.NodeAgent.Control;

var agents = int.Parse(ArgValue("--agents", "60"));
var tailnets = int.Parse(ArgValue("--tailnets", "2"));
var churnPerSecond = double.Parse(ArgValue("--churn-per-second", "10"));
var convergeTimeout = TimeSpan.FromSeconds(double.Parse(ArgValue("--converge-timeout", "90")));

Console.WriteLine($"failover bench: {agents} agents in {tailnets} tailnets, 3 coordinators, churn {churnPerSecond}/s");
await using var postgres = await PostgresServer.StartAsync();
await using var database = await PostgresDatabase.CreateAsync(postgres.AdminConnectionString);
await using var cluster = await CoordinatorCluster.StartAsync(3, database.ConnectionString);
using var admin = cluster.Admin();
Console.WriteLine("cluster up: " + string.Join(", ", cluster.Nodes.Select(n => $"{n.Name} {n.Api}")));

var keys = new Dictionary<string, string>();
for (var t = 0; t < tailnets; t++)
{
    var tailnet = (await admin.PostAsync("/api/v1/tailnets", new { name = $"bench-{t}-{Guid.NewGuid():N}"[..20] })).GetProperty("id").GetString()!;
    keys[tailnet] = (await admin.PostAsync($"/api/v1/tailnets/{tailnet}/auth-keys", new { reusable = true, expirySeconds = 86400 })).GetProperty("key").GetString()!;
}
await using var fleet = new AgentFleet();
await fleet.JoinAsync(cluster.ControlUrls, keys, agents / tailnets);
var settled = await fleet.WaitConverged(admin, convergeTimeout);
if (settled.Behind.Count > 0) throw new InvalidOperationException($"the fleet never converged before the kill: {settled.Behind.Count} behind, e.g. {settled.Behind[0].Difference}");
Console.WriteLine($"{fleet.Agents.Count} agents joined and converged in {settled.Took.TotalSeconds:0.0} s");

var writerTailnet = keys.Keys.First();
await using var writer = ContinuousWriter.Start(cluster.Admin(), writerTailnet, TimeSpan.FromMilliseconds(100));
using var churn = new CancellationTokenSource();
var churning = Churn(fleet, churnPerSecond, churn.Token);
await Task.Delay(TimeSpan.FromSeconds(5)); // steady state

// ---------------------------------------------------------------- kill -9 the node with the most sessions
var victim = await NodeWithMostSessions(cluster, admin, fleet);
var survivors = cluster.Nodes.Where(n => n != victim).ToList();
Console.WriteLine($"killing {victim.Name} (kill -9)");
var killedAt = DateTime.UtcNow;
await victim.Kill();
var downedAt = await cluster.WaitUntilRemoved(victim, survivors);
var downed = downedAt - killedAt;
Console.WriteLine($"{victim.Name} downed by the survivors after {downed.TotalSeconds:0.00} s");
await Task.Delay(TimeSpan.FromSeconds(3)); // the churn goes on through the takeover
await churn.CancelAsync();
await churning;
using var survivorsAdmin = cluster.Admin([.. survivors]);
var converged = await fleet.WaitConverged(survivorsAdmin, convergeTimeout);
var convergeSeconds = (DateTime.UtcNow - killedAt).TotalSeconds;
var writeGap = writer.LongestGap(killedAt - TimeSpan.FromSeconds(1), DateTime.UtcNow);
var reconnects = fleet.ReconnectTimes(killedAt);
var reconnectP99 = reconnects.Count == 0 ? 0 : Percentile(reconnects.Select(r => r == TimeSpan.MaxValue ? double.PositiveInfinity : r.TotalSeconds), 0.99);
Console.WriteLine($"kill: downed {downed.TotalSeconds:0.00} s, longest write gap {writeGap.TotalSeconds:0.00} s, {reconnects.Count} agents reconnected (p99 {reconnectP99:0.00} s), "
    + $"all converged {convergeSeconds:0.00} s after the kill ({converged.Behind.Count} behind)");
foreach (var behind in converged.Behind.Take(5)) Console.WriteLine($"  behind: {behind.Agent.Agent.Hostname}: {behind.Difference}");
var staleAfterKill = converged.Behind.Count;

// ---------------------------------------------------------------- the node comes back
victim.Start();
await victim.WhenReady(CoordinatorCluster.StartTimeout);
foreach (var node in cluster.Nodes) await cluster.WaitForMembers(node, 3);
Console.WriteLine($"{victim.Name} rejoined");

// ---------------------------------------------------------------- rolling restart under load
var failedWritesBefore = writer.Failed.Count;
using var rollingChurn = new CancellationTokenSource();
var rollingChurning = Churn(fleet, churnPerSecond, rollingChurn.Token);
var failedJoins = 0;
foreach (var node in cluster.Nodes)
{
    var took = await node.Terminate(TimeSpan.FromSeconds(60));
    Console.WriteLine($"{node.Name} stopped gracefully in {took.TotalSeconds:0.0} s (exit code {node.ExitCode})");
    // An agent joins while the node is down: an agent operation that must not fail.
    try
    {
        var tailnet = keys.Keys.Last();
        await fleet.JoinOneAsync(cluster.ControlUrls, tailnet, keys[tailnet]);
    }
    catch (TimeoutException e)
    {
        failedJoins++;
        Console.WriteLine("  a join failed: " + e.Message);
    }
    node.Start();
    await node.WhenReady(CoordinatorCluster.StartTimeout);
    foreach (var other in cluster.Nodes) await cluster.WaitForMembers(other, 3);
    Console.WriteLine($"{node.Name} back");
}
await rollingChurn.CancelAsync();
await rollingChurning;
var afterRolling = await fleet.WaitConverged(admin, convergeTimeout);
var failedWrites = writer.Failed.Count - failedWritesBefore;
foreach (var failure in writer.Failed.Skip(failedWritesBefore).Take(5)) Console.WriteLine($"  refused write: {failure.Error}");
foreach (var behind in afterRolling.Behind.Take(5)) Console.WriteLine($"  behind after rolling: {behind.Agent.Agent.Hostname}: {behind.Difference}");
var rollingFailed = failedWrites + failedJoins + afterRolling.Behind.Count;
Console.WriteLine($"rolling restart: {failedWrites} writes refused after retries, {failedJoins} joins failed, {afterRolling.Behind.Count} agents not converged");

await writer.DisposeAsync();
var lost = await writer.Lost(admin);
Console.WriteLine($"{writer.Acked.Count} writes acknowledged, {lost.Count} of them lost; {fleet.VersionsBackwards} netmap versions went backwards");

Console.WriteLine($"failover: agents={fleet.Agents.Count} downed_s={downed.TotalSeconds:0.00} write_gap_s={writeGap.TotalSeconds:0.00} reconnect_p99_s={reconnectP99:0.00} " +
    $"converge_s={convergeSeconds:0.00} stale_agents={staleAfterKill + afterRolling.Behind.Count} acked_lost={lost.Count} rolling_failed_ops={rollingFailed}");
return 0;

static async Task Churn(AgentFleet fleet, double perSecond, CancellationToken stop)
{
    var interval = TimeSpan.FromSeconds(1 / perSecond);
    try
    {
        while (!stop.IsCancellationRequested)
        {
            fleet.ChurnOne();
            await Task.Delay(interval, stop);
        }
    }
    catch (OperationCanceledException)
    {
    }
}

static async Task<CoordinatorNode> NodeWithMostSessions(CoordinatorCluster cluster, AdminApiClient admin, AgentFleet fleet)
{
    var counts = cluster.Nodes.ToDictionary(n => n.Address, _ => 0);
    foreach (var agent in fleet.Agents)
    {
        var stream = await admin.GetAsync($"/api/v1/tailnets/{agent.TailnetId}/devices/{agent.Agent.DeviceId}/stream");
        if (stream.GetProperty("coordinator").GetString() is { } address && counts.ContainsKey(address)) counts[address]++;
    }
    Console.WriteLine("sessions per node: " + string.Join(", ", cluster.Nodes.Select(n => $"{n.Name} {counts[n.Address]}")));
    var most = counts.MaxBy(kv => kv.Value).Key;
    return cluster.Nodes.First(n => n.Address == most);
}

static double Percentile(IEnumerable<double> values, double p)
{
    var sorted = values.Order().ToList();
    return sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
}

string ArgValue(string name, string fallback)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? args[index + 1] : fallback;
}
