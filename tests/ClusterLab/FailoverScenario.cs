using Weft.Cluster.Cli;

namespace Weft.ClusterLab;

/// <summary>
/// The load a failover is judged under: agents in a few tailnets (every agent knows every
/// coordinator), a writer creating users through the admin API, and endpoint churn that keeps
/// deltas flowing. Shared by the failover tests and bench/failover.
/// </summary>
public sealed class FailoverScenario : IAsyncDisposable
{
    private readonly CoordinatorCluster _cluster;
    private CancellationTokenSource? _churnStop;
    private Task _churning = Task.CompletedTask;

    private FailoverScenario(CoordinatorCluster cluster, AdminApiClient admin, AgentFleet fleet, IReadOnlyDictionary<string, string> keys, ContinuousWriter writer)
    {
        _cluster = cluster;
        Admin = admin;
        Fleet = fleet;
        Keys = keys;
        Writer = writer;
    }

    /// <summary>An operator's client that fails over across every node.</summary>
    public AdminApiClient Admin { get; }

    public AgentFleet Fleet { get; }

    /// <summary>Each tailnet's reusable auth key.</summary>
    public IReadOnlyDictionary<string, string> Keys { get; }

    /// <summary>Creates users in the first tailnet, one every 100 ms.</summary>
    public ContinuousWriter Writer { get; }

    public string WriterTailnet => Keys.Keys.First();

    /// <summary>Makes the tailnets, joins the agents (and waits until every one holds the cluster's view), starts the writer.</summary>
    public static async Task<FailoverScenario> StartAsync(CoordinatorCluster cluster, int tailnets, int agentsPerTailnet)
    {
        var admin = cluster.Admin();
        var keys = new Dictionary<string, string>();
        for (var t = 0; t < tailnets; t++)
        {
            var tailnet = (await admin.PostAsync("/api/v1/tailnets", new { name = $"failover-{t}-{Guid.NewGuid():N}"[..24] })).GetProperty("id").GetString()!;
            keys[tailnet] = (await admin.PostAsync($"/api/v1/tailnets/{tailnet}/auth-keys", new { reusable = true, expirySeconds = 86400 })).GetProperty("key").GetString()!;
        }
        var fleet = new AgentFleet();
        await fleet.JoinAsync(cluster.ControlUrls, keys, agentsPerTailnet);
        var settled = await fleet.WaitConverged(admin, TimeSpan.FromSeconds(90));
        if (settled.Behind.Count > 0)
            throw new InvalidOperationException($"the fleet never converged: {settled.Behind.Count} behind, e.g. {settled.Behind[0].Agent.Agent.Hostname}: {settled.Behind[0].Difference}");
        var writer = ContinuousWriter.Start(cluster.Admin(), keys.Keys.First(), TimeSpan.FromMilliseconds(100));
        return new FailoverScenario(cluster, admin, fleet, keys, writer);
    }

    /// <summary>Starts moving one agent's endpoint after another (<paramref name="perSecond"/> changes a second).</summary>
    public void StartChurn(double perSecond)
    {
        _churnStop = new CancellationTokenSource();
        var stop = _churnStop.Token;
        var interval = TimeSpan.FromSeconds(1 / perSecond);
        _churning = Task.Run(async () =>
        {
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    Fleet.ChurnOne();
                    await Task.Delay(interval, stop);
                }
            }
            catch (OperationCanceledException)
            {
            }
        });
    }

    public async Task StopChurn()
    {
        if (_churnStop is null) return;
        await _churnStop.CancelAsync();
        await _churning;
        _churnStop.Dispose();
        _churnStop = null;
    }

    /// <summary>The node whose sessions serve the most agents now.</summary>
    public async Task<CoordinatorNode> NodeWithMostSessions()
    {
        var counts = _cluster.Nodes.ToDictionary(n => n.Address, _ => 0);
        foreach (var agent in Fleet.Agents)
        {
            var stream = await Admin.GetAsync($"/api/v1/tailnets/{agent.TailnetId}/devices/{agent.Agent.DeviceId}/stream");
            // An agent between two streams (it reconnects after the last kill) has no coordinator now: it counts nowhere.
            if (stream.TryGetProperty("coordinator", out var coordinator) && coordinator.GetString() is { } address && counts.ContainsKey(address))
                counts[address]++;
        }
        var most = counts.MaxBy(kv => kv.Value).Key;
        return _cluster.Nodes.First(n => n.Address == most);
    }

    /// <summary>The node that hosts a tailnet's entity now.</summary>
    public async Task<CoordinatorNode> NodeHosting(string tailnet)
    {
        var address = (await Admin.GetAsync($"/api/v1/tailnets/{tailnet}/placement")).GetProperty("node").GetString();
        return _cluster.Nodes.First(n => n.Address == address);
    }

    public async ValueTask DisposeAsync()
    {
        await StopChurn();
        await Writer.DisposeAsync();
        await Fleet.DisposeAsync();
        Admin.Dispose();
    }
}
