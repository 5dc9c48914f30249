using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Weft.Cluster.Cli;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;
using Xunit.Abstractions;

namespace Weft.Cluster.Tests.MultiNode;

/// <summary>
/// Three coordinator processes on PostgreSQL run alone: their failure detectors must not be starved by
/// other tests' work (a starved node would rightly be taken for dead).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class CoordinatorProcesses
{
    public const string Name = "coordinator processes";
}

/// <summary>
/// A 3-node cluster of real processes on PostgreSQL, under load: agents in two tailnets (each knowing
/// every node), endpoint churn, and a writer creating users through whichever nodes answer. Nodes are
/// killed, restarted one by one, stopped all together, paused, and the store goes away underneath.
/// After each: every acknowledged write is there, every agent holds the cluster's view of it (same
/// version as its device entity, same peers), and no agent ever saw a version go backwards.
/// </summary>
[Collection(CoordinatorProcesses.Name)]
public class FailoverTests(ITestOutputHelper output)
{
    private const int Tailnets = 2;
    private const int AgentsPerTailnet = 6;
    private static readonly TimeSpan ConvergeDeadline = TimeSpan.FromSeconds(60);

    [SkippableFact]
    public async Task Killing_each_node_in_turn_loses_no_acknowledged_write_and_leaves_no_agent_stale()
    {
        await OnThreeNodesUnderLoad(async (cluster, scenario) =>
        {
            // The oldest node (it runs the shard coordinators), the one hosting the writer's tailnet, the one with the most sessions.
            Func<Task<CoordinatorNode>>[] victims =
            [
                () => Task.FromResult(cluster.Nodes.First(n => n.Name == "node1")),
                () => scenario.NodeHosting(scenario.WriterTailnet),
                () => scenario.NodeWithMostSessions(),
            ];
            foreach (var choose in victims)
            {
                scenario.StartChurn(5);
                await Task.Delay(TimeSpan.FromSeconds(2));
                var victim = await choose();
                var survivors = cluster.Nodes.Where(n => n != victim).ToList();
                var killedAt = DateTime.UtcNow;
                await victim.Kill();
                var downed = await cluster.Lab.WaitUntilRemoved(victim, survivors) - killedAt;
                await Task.Delay(TimeSpan.FromSeconds(2)); // changes keep coming during the takeover
                await scenario.StopChurn();

                using var viaSurvivors = cluster.Lab.Admin([.. survivors]);
                await AssertEveryAgentConverges(scenario, viaSurvivors, $"after {victim.Name} was killed");
                output.WriteLine($"killed {victim.Name}: downed after {downed.TotalSeconds:0.0} s, every agent converged {(DateTime.UtcNow - killedAt).TotalSeconds:0.0} s after the kill");
                await AssertDevicesAndAuditLogsBesideTheirTailnets(scenario, viaSurvivors, $"after {victim.Name} was killed");

                victim.Start();
                await victim.WhenReady(CoordinatorCluster.StartTimeout);
                foreach (var node in cluster.Nodes) await cluster.Lab.WaitForMembers(node, 3);
            }

            await scenario.Writer.Stop();
            Assert.True(scenario.Writer.Acked.Count > 0);
            await AssertNothingLostOrBackwards(scenario, scenario.Admin);
        });
    }

    [SkippableFact]
    public async Task A_rolling_restart_of_every_node_under_load_fails_no_agent_operation_and_refuses_no_write()
    {
        await OnThreeNodesUnderLoad(async (cluster, scenario) =>
        {
            scenario.StartChurn(5);
            foreach (var node in cluster.Nodes)
            {
                var took = await node.Terminate(TimeSpan.FromSeconds(60));
                output.WriteLine($"{node.Name} left in {took.TotalSeconds:0.0} s");
                Assert.Equal(0, node.ExitCode); // a graceful leave, not a crash
                // Agents keep joining while a node is away (each knows every node).
                var tailnet = scenario.Keys.Keys.Last();
                await scenario.Fleet.JoinOneAsync(cluster.Lab.ControlUrls, tailnet, scenario.Keys[tailnet]);
                node.Start();
                await node.WhenReady(CoordinatorCluster.StartTimeout);
                foreach (var other in cluster.Nodes) await cluster.Lab.WaitForMembers(other, 3);
            }
            await scenario.StopChurn();

            await AssertEveryAgentConverges(scenario, scenario.Admin);
            await scenario.Writer.Stop();
            Assert.Empty(scenario.Writer.Failed);
            await AssertNothingLostOrBackwards(scenario, scenario.Admin);
        });
    }

    [SkippableFact]
    public async Task After_every_node_stops_and_starts_again_every_listing_is_identical_and_the_agents_resume()
    {
        await OnThreeNodesUnderLoad(async (cluster, scenario) =>
        {
            await Task.Delay(TimeSpan.FromSeconds(1));
            await scenario.Writer.Stop();
            var tailnet = scenario.Keys.Keys.First();
            await scenario.Admin.PostTextAsync($"/api/v1/tailnets/{tailnet}/policy", "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:22\"]}]}", "application/hujson");
            var before = await Listings(scenario.Admin, scenario.Keys.Keys);

            foreach (var node in cluster.Nodes.Reverse()) await node.Terminate(TimeSpan.FromSeconds(60));
            foreach (var node in cluster.Nodes) node.Start();
            foreach (var node in cluster.Nodes) await node.WhenReady(CoordinatorCluster.StartTimeout);
            foreach (var node in cluster.Nodes) await cluster.Lab.WaitForMembers(node, 3);

            Assert.Equal(before, await Listings(scenario.Admin, scenario.Keys.Keys));
            await AssertEveryAgentConverges(scenario, scenario.Admin);
            await AssertNothingLostOrBackwards(scenario, scenario.Admin);
        });
    }

    [SkippableFact]
    public async Task A_paused_node_is_downed_the_majority_carries_on_and_the_node_stops_serving_when_it_wakes()
    {
        await OnThreeNodesUnderLoad(async (cluster, scenario) =>
        {
            var paused = cluster.Nodes[2];
            var majority = cluster.Nodes.Take(2).ToList();
            var pausedAt = DateTime.UtcNow;
            paused.Pause(); // frozen: its sockets stay open, it answers nothing

            await cluster.Lab.WaitUntilRemoved(paused, majority);
            // The majority carries on: admin writes through it succeed, and changes reach the agents it serves.
            using var viaMajority = cluster.Lab.Admin([.. majority]);
            var tailnet = scenario.Keys.Keys.Last();
            var created = await viaMajority.PostAsync($"/api/v1/tailnets/{tailnet}/users", new { name = "during-the-partition@example.com" });
            Assert.StartsWith("usr_", created.GetProperty("id").GetString());

            // Woken, the node finds itself downed: it must not serve what it knew, and it shuts itself down.
            paused.Resume();
            await Eventually.Until(() => !paused.Running, $"{paused.Name} shuts down after finding itself downed", TimeSpan.FromSeconds(60));

            // Agents on the paused node notice only when its keepalives have been missing for 30 s.
            await AssertEveryAgentConverges(scenario, viaMajority, deadline: TimeSpan.FromSeconds(90));
            output.WriteLine($"every agent converged {(DateTime.UtcNow - pausedAt).TotalSeconds:0.0} s after the pause");
            await scenario.Writer.Stop();
            await AssertNothingLostOrBackwards(scenario, viaMajority);
        });
    }

    [SkippableFact]
    public async Task PostgreSQL_restarted_underneath_gives_clear_errors_corrupts_nothing_and_the_cluster_resumes_by_itself()
    {
        Skip.If(PostgresServer.FindBinaries() is null && !TestPrerequisites.AllRequired, "PostgreSQL server binaries are not installed (./test.sh installs them)");
        await using var postgres = await PostgresServer.StartAsync();
        await using var database = await PostgresDatabase.CreateAsync(postgres.AdminConnectionString);
        await using var cluster = await CoordinatorCluster.StartAsync(3, database.ConnectionString);
        await using var scenario = await FailoverScenario.StartAsync(cluster, Tailnets, AgentsPerTailnet);
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(1));
            await scenario.Writer.Stop();
            var before = await Listings(scenario.Admin, scenario.Keys.Keys);

            await postgres.Stop();
            // A write while the store is away fails at once with a clear error, on every node.
            foreach (var node in cluster.Nodes)
            {
                using var http = CoordinatorCluster.Http(node);
                var answer = await http.PostAsJsonAsync($"/api/v1/tailnets/{scenario.WriterTailnet}/users", new { name = $"while-down-{node.Name}@example.com" });
                var error = await answer.ReadError(HttpStatusCode.ServiceUnavailable);
                Assert.Equal(ApiErrorCodes.Unavailable, error.Code);
                Assert.Contains("storage", error.Message);
                var readiness = await CoordinatorCluster.Readiness(node);
                Assert.False(readiness!.Ready);
                Assert.Contains(readiness.Checks, c => c.Name == "storage" && !c.Ok);
            }

            await postgres.Start();
            // Nobody restarts anything: the nodes are ready again once the store answers, and take writes.
            foreach (var node in cluster.Nodes)
                await Eventually.Until(() => CoordinatorCluster.Readiness(node), r => r?.Ready == true, $"{node.Name} ready again", TimeSpan.FromSeconds(90));
            // Nothing was lost or corrupted, and nothing refused was stored.
            Assert.Equal(before, await Listings(scenario.Admin, scenario.Keys.Keys));
            var resumed = await scenario.Admin.PostAsync($"/api/v1/tailnets/{scenario.WriterTailnet}/users", new { name = "after-the-outage@example.com" });
            Assert.StartsWith("usr_", resumed.GetProperty("id").GetString());
            Assert.Empty(await scenario.Writer.Lost(scenario.Admin));
            await AssertEveryAgentConverges(scenario, scenario.Admin);
        }
        catch
        {
            output.WriteLine(cluster.Outputs());
            throw;
        }
    }

    [SkippableFact]
    public async Task On_a_cluster_whose_entities_passivate_changes_after_idle_periods_reach_every_agent_and_presence_stays_true()
    {
        using var tuning = TestTuning.With("akka.cluster.sharding.passivate-idle-entity-after = 2s");
        await OnThreeNodesUnderLoad(async (cluster, scenario) =>
        {
            for (var round = 1; round <= 2; round++)
            {
                await Task.Delay(TimeSpan.FromSeconds(6)); // idle: three passivation timeouts
                foreach (var agent in scenario.Fleet.Agents.Where((_, i) => i % AgentsPerTailnet == 0))
                    await scenario.Admin.PostAsync($"/api/v1/tailnets/{agent.TailnetId}/devices/{agent.Agent.DeviceId}/rename", new { name = $"renamed-{round}-{agent.Agent.Hostname}" });
                await AssertEveryAgentConverges(scenario, scenario.Admin, $"after idle round {round}");
                foreach (var tailnet in scenario.Keys.Keys)
                {
                    var devices = (await scenario.Admin.GetAsync($"/api/v1/tailnets/{tailnet}/devices")).GetProperty("devices").EnumerateArray();
                    Assert.All(devices, d => Assert.True(d.GetProperty("online").GetBoolean(), $"{d.GetProperty("name")} is connected, so online"));
                }
            }
            Assert.Equal(0, scenario.Fleet.VersionsBackwards);
        }, new Dictionary<string, string>
        {
            ["Weft__AkkaConfigFile"] = tuning.Path,
            ["Weft__Control__SessionReattachSeconds"] = "120", // far longer than the passivation: only the sessions' watch re-attaches
            ["Weft__Control__PresenceTimeoutSeconds"] = "360",
        });
    }

    [SkippableFact]
    public async Task Three_nodes_with_no_seeds_find_each_other_through_the_kubernetes_api_and_form_one_cluster()
    {
        // Three "pods" on loopback, each with its own management port, and a stand-in for the Kubernetes
        // API that lists them (with a fourth pod that is still pending and must be ignored). Discovery,
        // probing, deciding who forms the cluster and joining are the ones a real pod runs.
        await using var database = (TestStorage.PostgresStorage)await TestStorage.NewPostgresAsync();
        var management = Enumerable.Range(0, 3).Select(_ => CoordinatorNode.FreeTcpPort()).ToList();
        var token = Path.GetTempFileName();
        await File.WriteAllTextAsync(token, "service-account-token\n");
        await using var kubernetes = await FakeKubernetesApi.StartAsync("weft-test", "app.kubernetes.io/name=weft", "service-account-token", management);
        var nodes = new List<CoordinatorNode>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                nodes.Add(new CoordinatorNode($"pod{i}", [], new Dictionary<string, string>
                {
                    ["Weft__Storage__Provider"] = "Postgres",
                    ["Weft__Storage__ConnectionString"] = database.ConnectionString,
                    ["Weft__Cluster__Secret"] = LabKeys.ClusterSecret,
                    ["Weft__Cluster__Discovery"] = "Kubernetes",
                    ["Weft__Cluster__Kubernetes__ApiUrl"] = kubernetes.Url.ToString(),
                    ["Weft__Cluster__Kubernetes__TokenPath"] = token,
                    ["Weft__Cluster__Kubernetes__PodNamespace"] = "weft-test",
                    ["Weft__Cluster__Kubernetes__PodLabelSelector"] = "app.kubernetes.io/name=weft",
                    ["Weft__Cluster__Kubernetes__ManagementPort"] = management[i].ToString(),
                    ["Weft__Cluster__Kubernetes__RequiredContactPoints"] = "3",
                }));
            }
            foreach (var node in nodes) node.Start();
            foreach (var node in nodes) await node.WhenReady(CoordinatorCluster.StartTimeout);

            foreach (var node in nodes)
            {
                var health = await Eventually.Until(() => CoordinatorCluster.Health(node), h => h?.Members.Count(m => m.Status == "up") == 3,
                    $"{node.Name} a member of one cluster of three");
                Assert.Equal(nodes.Select(n => n.Address).Order(), health!.Members.Select(m => m.Address).Order());
            }
            Assert.True(kubernetes.Lookups > 0);
            using var admin = new AdminApiClient(nodes.Select(n => n.Api).ToList(), LabKeys.OperatorKey);
            var created = await admin.PostAsync("/api/v1/tailnets", new { name = "bootstrapped" });
            Assert.Equal("bootstrapped", created.GetProperty("name").GetString());
        }
        catch
        {
            foreach (var node in nodes) output.WriteLine($"===== {node.Name}\n{node.Output}");
            throw;
        }
        finally
        {
            foreach (var node in nodes) await node.DisposeAsync();
            File.Delete(token);
        }
    }

    /// <summary>
    /// Runs <paramref name="test"/> on three coordinator processes with the agents, churn and writer of
    /// a <see cref="FailoverScenario"/>; when it fails, the test output gets every node's log.
    /// </summary>
    private async Task OnThreeNodesUnderLoad(Func<TestCluster, FailoverScenario, Task> test, IReadOnlyDictionary<string, string>? settings = null)
    {
        await using var cluster = await TestCluster.StartAsync(3, settings);
        await using var scenario = await FailoverScenario.StartAsync(cluster.Lab, Tailnets, AgentsPerTailnet);
        try
        {
            await test(cluster, scenario);
        }
        catch
        {
            output.WriteLine(cluster.Lab.Outputs());
            throw;
        }
    }

    /// <summary>Every agent's netmap equals its device entity's (version and peers) within the deadline.</summary>
    /// <summary>
    /// Every agent's device entity, and every tailnet's audit log, runs on the node of its tailnet's entity
    /// (TailnetAffinity and CoLocatingAllocationStrategy). After membership changes the two can sit apart until rebalancing
    /// brings them together (once membership has been steady for 30 s, at a 10 s round), so this waits for that.
    /// </summary>
    private async Task AssertDevicesAndAuditLogsBesideTheirTailnets(FailoverScenario scenario, AdminApiClient admin, string when)
    {
        var started = DateTime.UtcNow;
        var deadline = started + TimeSpan.FromSeconds(90);
        List<string> apart;
        while (true)
        {
            apart = [];
            var homes = new Dictionary<string, string?>();
            foreach (var tailnet in scenario.Keys.Keys)
            {
                var placement = await admin.GetAsync($"/api/v1/tailnets/{tailnet}/placement");
                homes[tailnet] = placement.GetProperty("node").GetString();
                var auditNode = placement.GetProperty("auditNode").GetString();
                if (auditNode != homes[tailnet]) apart.Add($"the audit log of {tailnet} on {auditNode}, its tailnet on {homes[tailnet]}");
            }
            foreach (var agent in scenario.Fleet.Agents)
            {
                var stream = await admin.GetAsync($"/api/v1/tailnets/{agent.TailnetId}/devices/{agent.Agent.DeviceId}/stream");
                var node = stream.TryGetProperty("entityNode", out var entityNode) ? entityNode.GetString() : null;
                if (node is null || node != homes[agent.TailnetId]) apart.Add($"{agent.Agent.Hostname} on {node ?? "(none)"}, its tailnet on {homes[agent.TailnetId]}");
            }
            if (apart.Count == 0 || DateTime.UtcNow > deadline) break;
            await Task.Delay(TimeSpan.FromSeconds(1));
        }
        Assert.True(apart.Count == 0, $"{when}, {apart.Count} device entities or audit logs are not on their tailnet's node: {string.Join("; ", apart.Take(5))}");
        output.WriteLine($"{when}: every device entity and audit log on its tailnet's node {(DateTime.UtcNow - started).TotalSeconds:0.0} s after the agents converged");
    }

    private static async Task AssertEveryAgentConverges(FailoverScenario scenario, AdminApiClient admin, string? when = null, TimeSpan? deadline = null)
    {
        var (_, behind) = await scenario.Fleet.WaitConverged(admin, deadline ?? ConvergeDeadline);
        Assert.True(behind.Count == 0, $"{(when is null ? "" : when + ", ")}{behind.Count} agents never converged: " +
            string.Join("; ", behind.Take(5).Select(b => $"{b.Agent.Agent.Hostname}: {b.Difference}")));
    }

    /// <summary>Every write the cluster acknowledged is there, and no agent ever saw its netmap version go backwards.</summary>
    private static async Task AssertNothingLostOrBackwards(FailoverScenario scenario, AdminApiClient admin)
    {
        Assert.Empty(await scenario.Writer.Lost(admin));
        Assert.Equal(0, scenario.Fleet.VersionsBackwards);
    }

    /// <summary>
    /// Everything an operator lists, apart from soft state (presence, last seen, endpoints: the agents
    /// report them again, and the fleet's convergence checks that) and time-dependent flags, as one comparable text.
    /// </summary>
    private static async Task<string> Listings(AdminApiClient admin, IEnumerable<string> tailnets)
    {
        var parts = new List<string> { Canonical(await admin.GetAsync("/api/v1/tailnets")) };
        foreach (var tailnet in tailnets.Order())
        {
            parts.Add(Canonical(await admin.GetAsync($"/api/v1/tailnets/{tailnet}")));
            parts.Add(Canonical(await admin.GetAsync($"/api/v1/tailnets/{tailnet}/auth-keys")));
            parts.Add(await admin.GetTextAsync($"/api/v1/tailnets/{tailnet}/policy"));
            var devices = (await admin.GetAsync($"/api/v1/tailnets/{tailnet}/devices")).GetProperty("devices").EnumerateArray()
                .Select(d => Canonical(d, "online", "lastSeen", "endpoints", "homeRelay", "endpointsUnknown")).Order();
            parts.Add(string.Join("\n", devices));
            parts.Add(Canonical(await admin.GetAsync($"/api/v1/tailnets/{tailnet}/users")));
        }
        return string.Join("\n", parts);
    }

    private static string Canonical(JsonElement element, params string[] without)
    {
        if (element.ValueKind != JsonValueKind.Object) return element.GetRawText();
        var kept = element.EnumerateObject().Where(p => !without.Contains(p.Name)).Select(p => $"\"{p.Name}\":{p.Value.GetRawText()}");
        return "{" + string.Join(",", kept) + "}";
    }
}
