using System.Diagnostics;
using Akka.Actor;
using Weft.Cluster.Cli;
using Weft.Contracts.Admin;
using Weft.LoadTest.Coordinators;
using Weft.LoadTest.Fleet;
using Weft.LoadTest.Reporting;
using Weft.LoadTest.Scenarios;
using Weft.NodeAgent.Control;

namespace Weft.LoadTest.Measurement;

/// <summary>
/// The end of a run: every simulated store is compared with the cluster's truth, the devices the
/// admin API lists for its tailnet, and that truth with what each node last reported. A store
/// converged when the cluster holds the node's own last endpoint, and the store holds exactly the
/// other devices of its tailnet that its policy group sees (by their tags: the whole tailnet with the
/// default policy), each with the node key and endpoints the cluster holds. A peer from another
/// tailnet is an isolation violation, whatever else is right.
/// </summary>
public static class ConvergenceCheck
{
    private const int ReportedDifferences = 20;

    public static async Task<ConvergenceResult> RunAsync(TargetCluster cluster, IReadOnlyList<string> tailnetIds, IReadOnlyList<SimulatedAgent> agents, int parallelism = 64)
    {
        var truth = new Dictionary<string, DeviceResource>[tailnetIds.Count];
        var tailnetOfDevice = new Dictionary<string, int>();
        for (var t = 0; t < tailnetIds.Count; t++)
        {
            truth[t] = (await cluster.DevicesAsync(tailnetIds[t])).ToDictionary(d => d.Id);
            foreach (var id in truth[t].Keys) tailnetOfDevice[id] = t;
        }

        var differences = new List<string>();
        var converged = 0;
        var violations = 0;
        using var gate = new SemaphoreSlim(parallelism);
        var checks = agents.Select(async agent =>
        {
            await gate.WaitAsync();
            try
            {
                var status = await agent.Actor.Ask<AgentStatus>(GetAgentStatus.Instance, TimeSpan.FromSeconds(60));
                var (difference, isolation) = Compare(agent, status, truth[agent.Tailnet], tailnetIds[agent.Tailnet], tailnetOfDevice);
                lock (differences)
                {
                    if (difference is null) converged++;
                    else if (differences.Count < ReportedDifferences) differences.Add($"agent {agent.Index}: {difference}");
                    violations += isolation;
                }
            }
            catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
            {
                lock (differences) if (differences.Count < ReportedDifferences) differences.Add($"agent {agent.Index}: did not answer for its status");
            }
            finally
            {
                gate.Release();
            }
        });
        await Task.WhenAll(checks);
        return new ConvergenceResult(agents.Count, converged, violations, differences);
    }

    /// <summary>
    /// Runs <paramref name="check"/> until every agent has converged or <paramref name="timeout"/> has
    /// passed (key rotations and reconnects may still be settling). A cluster that cannot say its view
    /// for a while (after a kill, tailnets on the survivors may still be recovering and the admin API
    /// answers 503, or a node refuses) is asked again; if it still cannot at the deadline, the result
    /// says so and counts no agent as converged, and the run's other measurements are kept.
    /// </summary>
    public static async Task<ConvergenceResult> UntilConvergedAsync(
        Func<Task<ConvergenceResult>> check, int agents, TimeSpan timeout, TimeSpan pause, TextWriter log, CancellationToken cancel)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            try
            {
                var result = await check();
                if (result.Converged == result.AgentsChecked || Stopwatch.GetTimestamp() > deadline) return result;
            }
            catch (Exception e) when (e is HttpRequestException or AdminApiError or TaskCanceledException && !cancel.IsCancellationRequested)
            {
                if (Stopwatch.GetTimestamp() > deadline)
                    return new ConvergenceResult(agents, 0, 0, [$"the cluster's view could not be read: {e.Message}"]);
                log.WriteLine($"warning: the cluster's view could not be read ({e.Message}); asking again");
            }
            await Task.Delay(pause, cancel);
        }
    }

    /// <summary>The first difference between a store and the cluster's view (null when none), and how many of its peers belong to another tailnet.</summary>
    public static (string? Difference, int IsolationViolations) Compare(
        SimulatedAgent agent, AgentStatus status, IReadOnlyDictionary<string, DeviceResource> tailnetDevices, string tailnetId,
        IReadOnlyDictionary<string, int> tailnetOfDevice)
    {
        var foreign = status.Peers.Count(p => tailnetOfDevice.TryGetValue(p.Id, out var t) && t != agent.Tailnet);
        if (foreign > 0) return ($"holds {foreign} peer(s) of another tailnet", foreign);
        if (status.State != ControlState.Running) return ($"is {status.State} ({status.Detail})", 0);
        if (status.TailnetId != tailnetId) return ($"is in tailnet {status.TailnetId}, not {tailnetId}", 0);
        if (status.DeviceId is null || !tailnetDevices.TryGetValue(status.DeviceId, out var self)) return ($"its device {status.DeviceId} is not in its tailnet", 0);
        // The truth itself must be current: a change the cluster dropped leaves every store agreeing with a stale endpoint.
        if (self.Endpoints.Count != 1 || self.Endpoints[0] != agent.ReportedEndpoint)
            return ($"the cluster holds [{string.Join(' ', self.Endpoints)}] for it, its agent last reported {agent.ReportedEndpoint}", 0);
        var group = LoadPolicy.GroupOf(self.Tags);
        if (group != agent.Group) return ($"its device carries the tags of group {group}, it joined into group {agent.Group}", 0);
        var expected = tailnetDevices.Values.Count(d => d.Id != self.Id && LoadPolicy.GroupOf(d.Tags) == group);
        if (status.Peers.Count != expected) return ($"holds {status.Peers.Count} peers, the cluster lists {expected} in its group", 0);
        foreach (var peer in status.Peers)
        {
            if (!tailnetDevices.TryGetValue(peer.Id, out var device) || peer.Id == status.DeviceId) return ($"holds peer {peer.Id}, which the cluster does not list", 0);
            if (LoadPolicy.GroupOf(device.Tags) != group) return ($"holds peer {peer.Id} of group {LoadPolicy.GroupOf(device.Tags)}, which its policy does not let it see", 0);
            if (!string.Equals(peer.NodeKey, device.NodeKey, StringComparison.OrdinalIgnoreCase)) return ($"holds {peer.NodeKey} for {peer.Id}, the cluster {device.NodeKey}", 0);
            if (!peer.Endpoints.Order(StringComparer.Ordinal).SequenceEqual(device.Endpoints.Order(StringComparer.Ordinal)))
                return ($"holds endpoints [{string.Join(' ', peer.Endpoints)}] for {peer.Id}, the cluster [{string.Join(' ', device.Endpoints)}]", 0);
        }
        return (null, 0);
    }
}
