using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Akka.Actor;
using Weft.Cluster.Cli;
using Weft.Contracts.Control;
using Weft.NodeAgent.Control;

namespace Weft.ClusterLab;

/// <summary>One agent of a fleet: its tailnet, and when it last (re)connected.</summary>
public sealed record FleetAgent(TestAgent Agent, string TailnetId);

/// <summary>Where one agent stands against the cluster's view of it.</summary>
public sealed record AgentComparison(FleetAgent Agent, bool Converged, string Difference);

/// <summary>
/// Agents (real ControlClients, each on its own stream) spread over tailnets and over the cluster's
/// coordinators, and the ways a failover test judges them: does every agent hold the netmap the
/// cluster holds for it (the same version as its device entity, the same peers with the same keys,
/// names and endpoints), and did any ever see a version go backwards.
/// </summary>
public sealed class AgentFleet : IAsyncDisposable
{
    private static readonly Google.Protobuf.JsonParser Json = new(Google.Protobuf.JsonParser.Settings.Default.WithIgnoreUnknownFields(true));
    private readonly AgentSystem _system = new();
    private readonly List<FleetAgent> _agents = [];
    private readonly ConcurrentDictionary<TestAgent, List<(DateTime At, ControlState State, string Reason)>> _states = new();
    private int _churn;

    public IReadOnlyList<FleetAgent> Agents => _agents;

    public ActorSystem System => _system.System;

    /// <summary>
    /// Joins <paramref name="perTailnet"/> agents to each tailnet with a reusable key. Every agent knows
    /// every coordinator, starting with a different one, so that sessions spread over the nodes.
    /// </summary>
    public async Task JoinAsync(IReadOnlyList<Uri> coordinators, IReadOnlyDictionary<string, string> keysByTailnet, int perTailnet,
        Func<ControlClientOptions, ControlClientOptions>? tune = null)
    {
        var joining = new List<TestAgent>();
        foreach (var (tailnet, key) in keysByTailnet)
        {
            for (var i = 0; i < perTailnet; i++)
            {
                var index = _agents.Count;
                var rotated = coordinators.Skip(index % coordinators.Count).Concat(coordinators.Take(index % coordinators.Count)).ToList();
                var agent = TestAgent.Start(_system, rotated, $"sim-{index}", key, endpoints: [Endpoint(index, 0)], tune: tune);
                _agents.Add(new FleetAgent(agent, tailnet));
                joining.Add(agent);
                Track(agent);
            }
        }
        foreach (var agent in joining) await agent.WaitForState(ControlState.Running);
    }

    /// <summary>One more agent joining now (an operation that must succeed even during a rolling restart).</summary>
    public async Task<FleetAgent> JoinOneAsync(IReadOnlyList<Uri> coordinators, string tailnet, string key)
    {
        var index = _agents.Count;
        var agent = TestAgent.Start(_system, coordinators, $"sim-{index}", key, endpoints: [Endpoint(index, 0)]);
        var joined = new FleetAgent(agent, tailnet);
        lock (_agents) _agents.Add(joined);
        Track(agent);
        await agent.WaitForState(ControlState.Running);
        return joined;
    }

    /// <summary>Moves one agent's endpoint (round-robin over the fleet): a change its peers must hear.</summary>
    public void ChurnOne()
    {
        var step = Interlocked.Increment(ref _churn);
        var agents = Snapshot();
        var index = step % agents.Count;
        agents[index].Agent.Client.Tell(new SetEndpoints([Endpoint(index, step)], 0));
    }

    /// <summary>When each agent was last seen connecting after <paramref name="since"/>, for the agents that lost their stream then.</summary>
    public IReadOnlyList<TimeSpan> ReconnectTimes(DateTime since) => Reconnects(since).Select(r => r.After).ToList();

    /// <summary>The agents that lost their stream after <paramref name="since"/>, with the reason they were given, and how long until they were running again.</summary>
    public IReadOnlyList<(TestAgent Agent, TimeSpan After, string Reason)> Reconnects(DateTime since)
    {
        var times = new List<(TestAgent, TimeSpan, string)>();
        foreach (var (agent, history) in _states)
        {
            lock (history)
            {
                var lost = history.FirstOrDefault(h => h.At >= since && h.State != ControlState.Running);
                if (lost == default) continue;
                var back = history.FirstOrDefault(h => h.At >= lost.At && h.State == ControlState.Running);
                times.Add((agent, back != default ? back.At - since : TimeSpan.MaxValue, lost.Reason));
            }
        }
        return times;
    }

    public int VersionsBackwards => Snapshot().Sum(a => a.Agent.VersionsBackwards);

    /// <summary>Every agent against the cluster's view, asked through <paramref name="admin"/>.</summary>
    public async Task<IReadOnlyList<AgentComparison>> Compare(AdminApiClient admin)
    {
        var results = new List<AgentComparison>();
        foreach (var agent in Snapshot()) results.Add(await Compare(admin, agent));
        return results;
    }

    /// <summary>Waits until every agent holds the cluster's view; returns how long that took, or the agents still behind.</summary>
    public async Task<(TimeSpan Took, IReadOnlyList<AgentComparison> Behind)> WaitConverged(AdminApiClient admin, TimeSpan timeout)
    {
        var watch = Stopwatch.StartNew();
        IReadOnlyList<AgentComparison> behind = [];
        while (watch.Elapsed < timeout)
        {
            behind = (await Compare(admin)).Where(c => !c.Converged).ToList();
            if (behind.Count == 0) return (watch.Elapsed, behind);
            await Task.Delay(250);
        }
        return (watch.Elapsed, behind);
    }

    private async Task<AgentComparison> Compare(AdminApiClient admin, FleetAgent fleetAgent)
    {
        var agent = fleetAgent.Agent;
        var deviceId = agent.DeviceId;
        if (deviceId is null) return new AgentComparison(fleetAgent, false, "not registered");
        try
        {
            var path = $"/api/v1/tailnets/{fleetAgent.TailnetId}/devices/{deviceId}";
            var stream = await admin.GetAsync(path + "/stream");
            var netmap = Json.Parse<NetMap>((await admin.GetAsync(path + "/netmap")).GetRawText());
            var view = agent.View;
            var version = stream.GetProperty("version").GetUInt64();
            if (!stream.GetProperty("connected").GetBoolean()) return new AgentComparison(fleetAgent, false, "no session attached");
            if (stream.GetProperty("awaitingFullMap").GetBoolean()) return new AgentComparison(fleetAgent, false, "a full map is on its way");
            if (view.Version != version) return new AgentComparison(fleetAgent, false, $"agent at v{view.Version}, its entity at v{version}");
            var expected = Describe(netmap.Peers);
            var actual = Describe(view.Peers.Values);
            return expected == actual
                ? new AgentComparison(fleetAgent, true, "")
                : new AgentComparison(fleetAgent, false, $"peers differ: agent [{actual}] cluster [{expected}]");
        }
        catch (Exception e) when (e is AdminApiError or HttpRequestException or TaskCanceledException or JsonException or Google.Protobuf.InvalidJsonException)
        {
            return new AgentComparison(fleetAgent, false, "cannot ask the cluster: " + e.Message);
        }
    }

    /// <summary>What peers look like apart from presence (online, last seen), which legitimately lags.</summary>
    private static string Describe(IEnumerable<Node> peers) => string.Join("; ", peers.OrderBy(p => p.Id, StringComparer.Ordinal)
        .Select(p => $"{p.Id} {p.Name} {Convert.ToHexString(p.NodeKey.Span)[..8]} {string.Join(",", p.Endpoints)}"));

    private static string Endpoint(int agent, int step) => $"198.18.{100 + agent / 250}.{agent % 250 + 1}:{10000 + step % 50000}";

    private List<FleetAgent> Snapshot()
    {
        lock (_agents) return _agents.ToList();
    }

    private void Track(TestAgent agent)
    {
        var history = _states.GetOrAdd(agent, _ => []);
        agent.OnStateChanged = changed =>
        {
            lock (history) history.Add((DateTime.UtcNow, changed.State, changed.Detail));
        };
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var agent in Snapshot()) agent.Agent.Dispose();
        await _system.DisposeAsync();
    }
}
