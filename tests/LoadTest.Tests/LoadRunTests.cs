using Weft.ClusterLab;
using Weft.LoadTest.Coordinators;
using Weft.LoadTest.Fleet;
using Weft.LoadTest.Reporting;
using Weft.LoadTest.Scenarios;
using Xunit.Abstractions;

namespace Weft.LoadTest.Tests;

/// <summary>
/// Small load runs against real coordinator processes: hundreds of simulated nodes (real
/// ControlClients on real gRPC streams) in several tailnets, under endpoint churn, key rotations, a
/// reconnect storm and a coordinator killed with SIGKILL. Every run must end with every change at
/// every peer (none lost, duplicated or backwards), every store equal to the cluster's view, and no
/// peer seen across tailnets.
/// </summary>
public sealed class LoadRunTests(ITestOutputHelper output)
{
    private const string PostgresVariable = "WEFT_TEST_POSTGRES";

    private sealed class OutputWriter(ITestOutputHelper output) : StringWriter
    {
        public override void WriteLine(string? value)
        {
            try { output.WriteLine(value ?? ""); }
            catch (InvalidOperationException) { } // the test has finished; a late line is dropped
        }
    }

    private void Print(LoadResult result)
    {
        output.WriteLine(MarkdownReport.Markdown(result));
    }

    /// <summary>Runs a scenario against a coordinator process of its own (SQLite), and prints its report.</summary>
    private async Task<LoadResult> RunOnOwnCoordinatorAsync(Scenario scenario)
    {
        var log = new OutputWriter(output);
        await using var cluster = await TargetCluster.StartLocalAsync(log);
        var result = await new LoadRun(scenario.Validated(), cluster, log).RunAsync();
        Print(result);
        return result;
    }

    private static void AssertNothingLostAndEverythingConverged(LoadResult result, int nodes)
    {
        Assert.Equal(nodes, result.Nodes);
        Assert.Equal(nodes, result.Join.Nodes);
        Assert.True(result.Delivery.Expected > 0, "no change was due anywhere");
        Assert.True(result.Delivery.Delivered > result.Delivery.Expected / 2, $"only {result.Delivery.Delivered} of {result.Delivery.Expected} deliveries were direct");
        Assert.Equal(0, result.Delivery.Lost);
        Assert.Equal(0, result.Delivery.Duplicated);
        Assert.Equal(0, result.Delivery.OutOfOrder);
        Assert.Equal(result.Delivery.Expected, result.Delivery.Delivered + result.Delivery.Superseded);
        Assert.True(result.Convergence.Differences.Count == 0, string.Join("\n", result.Convergence.Differences));
        Assert.Equal(nodes, result.Convergence.AgentsChecked);
        Assert.Equal(nodes, result.Convergence.Converged);
        Assert.Equal(0, result.Convergence.IsolationViolations);
        Assert.True(result.Passed);
        Assert.All(result.Phases, p => Assert.True(p.Latency.Count > 0, $"phase {p.Name} measured nothing"));
    }

    [Fact]
    public async Task Two_hundred_nodes_in_five_tailnets_converge_with_nothing_lost_under_churn_rotations_and_a_reconnect_storm()
    {
        var result = await RunOnOwnCoordinatorAsync(new Scenario
        {
            Name = "ci-single",
            Tailnets = [new TailnetGroup(4, 25), new TailnetGroup(1, 100)],
            JoinsInFlight = 64,
            // The big tailnet's agents keep thin peer records, all but every tenth: the end check reads both kinds.
            ThinAbovePeers = 50,
            FullSampleEvery = 10,
            Phases =
            [
                new ChurnPhase { Name = "steady", Seconds = 8, EndpointChangesPerSecond = 100, KeyRotationsPerSecond = 2 },
                new ChurnPhase { Name = "reconnect-storm", Seconds = 6, EndpointChangesPerSecond = 100, ReconnectStorm = true, ReconnectSpreadSeconds = 1 },
            ],
        });

        AssertNothingLostAndEverythingConverged(result, 200);
        Assert.Equal(90, result.ThinAgents);
        Assert.Equal(2, result.Phases.Count);
        Assert.True(result.Delivery.Deltas > 0);
        Assert.True(result.Memory.CoordinatorKbPerDevice > 0, "the coordinator process was not sampled");
        Assert.Null(result.Phases[0].ConvergeAfterChaosSeconds);
    }

    [Fact]
    public async Task Policy_groups_see_only_themselves_and_every_join_leave_ephemeral_expiry_and_policy_edit_reaches_every_peer_that_must_see_it()
    {
        var result = await RunOnOwnCoordinatorAsync(new Scenario
        {
            Name = "ci-groups-churn",
            Tailnets = [new TailnetGroup(3, 24)],
            PolicyGroups = 2,
            JoinsInFlight = 32,
            Phases =
            [
                new ChurnPhase
                {
                    Name = "membership", Seconds = 10, EndpointChangesPerSecond = 30,
                    JoinsPerSecond = 2, LeavesPerSecond = 1, EphemeralPerSecond = 1, PolicyEditsPerSecond = 1,
                },
            ],
        });

        // Only the fleet that joined first is measured for endpoint changes; the rest comes and goes.
        Assert.Equal(72, result.Nodes);
        Assert.True(result.Delivery.Expected > 0);
        Assert.Equal(0, result.Delivery.Lost);
        Assert.Equal(0, result.Delivery.Duplicated);
        Assert.Equal(0, result.Delivery.OutOfOrder);
        Assert.Equal(0, result.Convergence.IsolationViolations);
        Assert.True(result.Convergence.Differences.Count == 0, string.Join("\n", result.Convergence.Differences));
        var churn = result.Churn.ToDictionary(c => c.Kind);
        Assert.Equal(["Joined", "Left", "EphemeralGone", "PolicyEdited"], result.Churn.Select(c => c.Kind));
        foreach (var c in result.Churn)
        {
            Assert.True(c.Events > 0 && c.Expected > 0, $"{c.Kind}: nothing was due");
            Assert.Equal(0, c.Lost);
            Assert.Equal(c.Expected, c.Settled);
        }
        // Each event is due at the measured nodes of one group (12 of a tailnet's 24), an edit at all 24.
        Assert.Equal(churn["Joined"].Events * 12, churn["Joined"].Expected);
        Assert.Equal(churn["PolicyEdited"].Events * 24, churn["PolicyEdited"].Expected);
        // Every node still connected was checked: the first fleet, plus those that joined and did not leave.
        Assert.Equal(72 + churn["Joined"].Events - churn["Left"].Events - churn["EphemeralGone"].Events, result.Convergence.AgentsChecked);
        Assert.Equal(result.Convergence.AgentsChecked, result.Convergence.Converged);
        Assert.True(result.Passed);
    }

    [Fact]
    public async Task Two_shards_in_step_drive_one_coordinator_and_their_merged_result_has_every_node_and_nothing_lost()
    {
        var log = new OutputWriter(output);
        await using var local = await TargetCluster.StartLocalAsync(log);
        var sync = Directory.CreateTempSubdirectory("weft-shards-").FullName;
        try
        {
            var scenario = new Scenario
            {
                Name = "ci-shards",
                Tailnets = [new TailnetGroup(3, 20), new TailnetGroup(1, 40)],
                JoinsInFlight = 64,
                Phases = [new ChurnPhase { Name = "steady", Seconds = 8, EndpointChangesPerSecond = 60, KeyRotationsPerSecond = 1 }],
            }.Validated();
            // Two generators as two processes would run them: each with its own view of the same cluster.
            var shards = await Task.WhenAll(new[] { "1/2", "2/2" }.Select(async text =>
            {
                var shard = Shard.Parse(text);
                await using var cluster = TargetCluster.Existing(local.Control, local.ApiUrls, local.ApiKey, local.SampledProcesses);
                var run = new LoadRun(scenario.ForShard(shard), cluster, log) { Barrier = new ShardBarrier(sync, shard, log) };
                return await run.RunAsync();
            }));

            // Tailnets 0 and 2 (20 each) for shard 1; tailnet 1 (20) and the 40 for shard 2.
            Assert.Equal([40, 60], shards.Select(s => s.Nodes));
            Assert.Equal(["1/2", "2/2"], shards.Select(s => s.Shard));
            var merged = ResultMerge.Merge(shards);
            Print(merged);
            AssertNothingLostAndEverythingConverged(merged, 100);
            Assert.All(shards, s => Assert.True(s.Passed, $"shard {s.Shard} failed"));
            Assert.Equal(shards.Sum(s => s.Latency.Count), merged.Latency.Count);
            Assert.Equal(shards.Sum(s => s.Delivery.Delivered), merged.Delivery.Delivered);
            // Both waited at the same points, so the coordinator's growth each saw is the whole fleet's.
            Assert.True(merged.Memory.CoordinatorKbPerDevice > 0, "the coordinator process was not sampled");
            Assert.All(["tailnets", "joined", "phase-0", "drained"], point => Assert.True(File.Exists(Path.Combine(sync, point + ".2")), $"shard 2 never reached {point}"));
        }
        finally
        {
            Directory.Delete(sync, recursive: true);
        }
    }

    [SkippableFact]
    public async Task A_coordinator_killed_under_churn_loses_nothing_and_every_store_converges_on_the_two_that_remain()
    {
        var admin = Environment.GetEnvironmentVariable(PostgresVariable);
        if (string.IsNullOrWhiteSpace(admin))
        {
            var reason = $"no PostgreSQL server: set {PostgresVariable} to an admin connection string (./test.sh starts one)";
            if (Environment.GetEnvironmentVariable("WEFT_REQUIRE_ALL_TESTS") == "1") throw new InvalidOperationException(reason);
            Skip.If(true, reason);
        }
        await using var database = await PostgresDatabase.CreateAsync(admin!);
        await using var coordinators = await CoordinatorCluster.StartAsync(3, database.ConnectionString);
        var log = new OutputWriter(output);
        await using var cluster = TargetCluster.Existing(coordinators.ControlUrls, coordinators.Nodes.Select(n => n.Api).ToList(), LabKeys.OperatorKey, []);
        var victim = coordinators.Nodes[1];
        var scenario = new Scenario
        {
            Name = "ci-kill",
            Tailnets = [new TailnetGroup(6, 25)],
            JoinsInFlight = 64,
            Phases =
            [
                new ChurnPhase { Name = "steady", Seconds = 5, EndpointChangesPerSecond = 50 },
                new ChurnPhase { Name = "kill", Seconds = 25, EndpointChangesPerSecond = 50, ChaosAtSecond = 3, ChaosAction = victim.Kill },
            ],
        }.Validated();

        var result = await new LoadRun(scenario, cluster, log).RunAsync();
        output.WriteLine(coordinators.Outputs().Length > 20_000 ? coordinators.Outputs()[^20_000..] : coordinators.Outputs());
        Print(result);

        Assert.False(victim.Running);
        AssertNothingLostAndEverythingConverged(result, 150);
        Assert.NotNull(result.Phases[1].ConvergeAfterChaosSeconds);
    }
}
