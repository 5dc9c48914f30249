// The failover benchmark: what agents and admin clients see when a coordinator node is killed, comes
// back, and when every node restarts in turn (a rolling upgrade), on three nodes and PostgreSQL.
using System.Text.RegularExpressions;
using Weft.ClusterLab;

var agents = int.Parse(ArgValue("--agents", "60"));
var tailnets = int.Parse(ArgValue("--tailnets", "2"));
var churnPerSecond = double.Parse(ArgValue("--churn-per-second", "10"));
var convergeTimeout = TimeSpan.FromSeconds(double.Parse(ArgValue("--converge-timeout", "90")));

Console.WriteLine($"failover bench: {agents} agents in {tailnets} tailnets, 3 coordinators, churn {churnPerSecond}/s");
await using var postgres = await PostgresServer.StartAsync();
await using var database = await PostgresDatabase.CreateAsync(postgres.AdminConnectionString);
await using var cluster = await CoordinatorCluster.StartAsync(3, database.ConnectionString);
Console.WriteLine("cluster up: " + string.Join(", ", cluster.Nodes.Select(n => $"{n.Name} {n.Api}")));
await using var scenario = await FailoverScenario.StartAsync(cluster, tailnets, agents / tailnets);
var fleet = scenario.Fleet;
var writer = scenario.Writer;
Console.WriteLine($"{fleet.Agents.Count} agents joined and converged");
scenario.StartChurn(churnPerSecond);
await Task.Delay(TimeSpan.FromSeconds(5)); // steady state

// ---------------------------------------------------------------- kill -9 the node with the most sessions
var victim = await scenario.NodeWithMostSessions();
var survivors = cluster.Nodes.Where(n => n != victim).ToList();
Console.WriteLine($"killing {victim.Name} (kill -9); the writer's tailnet lives on {(await scenario.NodeHosting(scenario.WriterTailnet)).Name}");
var killedAt = DateTime.UtcNow;
await victim.Kill();
var downed = await cluster.WaitUntilRemoved(victim, survivors) - killedAt;
Console.WriteLine($"{victim.Name} downed by the survivors after {downed.TotalSeconds:0.00} s");
await Task.Delay(TimeSpan.FromSeconds(3)); // the churn goes on through the takeover
await scenario.StopChurn();
using var survivorsAdmin = cluster.Admin([.. survivors]);
var converged = await fleet.WaitConverged(survivorsAdmin, convergeTimeout);
var convergeSeconds = (DateTime.UtcNow - killedAt).TotalSeconds;
var writeGap = writer.LongestGap(killedAt - TimeSpan.FromSeconds(1), DateTime.UtcNow);
var reconnects = fleet.Reconnects(killedAt);
var reconnectP99 = reconnects.Count == 0 ? 0 : Percentile(reconnects.Select(r => r.After == TimeSpan.MaxValue ? double.PositiveInfinity : r.After.TotalSeconds), 0.99);
Console.WriteLine($"kill: downed {downed.TotalSeconds:0.00} s, longest write gap {writeGap.TotalSeconds:0.00} s, {reconnects.Count} agents reconnected (p99 {reconnectP99:0.00} s), "
    + $"all converged {convergeSeconds:0.00} s after the kill ({converged.Behind.Count} behind)");
foreach (var reason in reconnects.GroupBy(r => Regex.Replace(r.Reason, @"\d+", "#"))) Console.WriteLine($"  {reason.Count()} reconnected after: {reason.Key}");
foreach (var behind in converged.Behind.Take(5)) Console.WriteLine($"  behind: {behind.Agent.Agent.Hostname}: {behind.Difference}");
var staleAfterKill = converged.Behind.Count;

// ---------------------------------------------------------------- the node comes back
victim.Start();
await victim.WhenReady(CoordinatorCluster.StartTimeout);
foreach (var node in cluster.Nodes) await cluster.WaitForMembers(node, 3);
Console.WriteLine($"{victim.Name} rejoined");

// ---------------------------------------------------------------- rolling restart under load
var failedWritesBefore = writer.Failed.Count;
scenario.StartChurn(churnPerSecond);
var failedJoins = 0;
foreach (var node in cluster.Nodes)
{
    var took = await node.Terminate(TimeSpan.FromSeconds(60));
    Console.WriteLine($"{node.Name} left gracefully in {took.TotalSeconds:0.0} s (exit code {node.ExitCode})");
    // An agent joins while the node is down: an agent operation that must not fail.
    try
    {
        var tailnet = scenario.Keys.Keys.Last();
        await fleet.JoinOneAsync(cluster.ControlUrls, tailnet, scenario.Keys[tailnet]);
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
await scenario.StopChurn();
var afterRolling = await fleet.WaitConverged(scenario.Admin, convergeTimeout);
var failedWrites = writer.Failed.Count - failedWritesBefore;
foreach (var failure in writer.Failed.Skip(failedWritesBefore).Take(5)) Console.WriteLine($"  refused write: {failure.Error}");
foreach (var behind in afterRolling.Behind.Take(5)) Console.WriteLine($"  behind after rolling: {behind.Agent.Agent.Hostname}: {behind.Difference}");
var rollingFailed = failedWrites + failedJoins + afterRolling.Behind.Count;
Console.WriteLine($"rolling restart: {failedWrites} writes refused after retries, {failedJoins} joins failed, {afterRolling.Behind.Count} agents not converged");

await writer.Stop();
var lost = await writer.Lost(scenario.Admin);
Console.WriteLine($"{writer.Acked.Count} writes acknowledged, {lost.Count} of them lost; {fleet.VersionsBackwards} netmap versions went backwards");

Console.WriteLine($"failover: agents={fleet.Agents.Count} downed_s={downed.TotalSeconds:0.00} write_gap_s={writeGap.TotalSeconds:0.00} reconnect_p99_s={reconnectP99:0.00} " +
    $"converge_s={convergeSeconds:0.00} stale_agents={staleAfterKill + afterRolling.Behind.Count} acked_lost={lost.Count} rolling_failed_ops={rollingFailed}");
return 0;

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
