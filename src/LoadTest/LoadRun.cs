using System.Collections.Immutable;
using System.Diagnostics;
using Akka.Actor;
using Grpc.Net.Client;
using HdrHistogram;
using Weft.LoadTest.Coordinators;
using Weft.LoadTest.Fleet;
using Weft.LoadTest.Measurement;
using Weft.LoadTest.Reporting;
using Weft.LoadTest.Scenarios;
using Weft.NodeAgent.Agent;
using Weft.NodeAgent.Control;

namespace Weft.LoadTest;

/// <summary>What a run shows while it goes (once a second).</summary>
public sealed record RunProgress(
    string Phase, double Elapsed, int Nodes, int Joined, int Meshed, int Changes, long Delivered, long Unsettled, TimelinePoint? LastSecond);

/// <summary>
/// One load run: make the tailnets, let every simulated node join at once (a registration storm with
/// so many in flight), wait until each holds its whole tailnet, then drive the churn phases while
/// the <see cref="DeliveryLedger"/> follows every change to every peer, and finally compare every
/// store with the cluster's truth.
/// </summary>
public sealed class LoadRun(Scenario scenario, TargetCluster cluster, TextWriter log, int seed = 20261202)
{
    private static readonly TimeSpan JoinTimeout = TimeSpan.FromMinutes(30);
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(90);
    private static readonly TimeSpan ConvergenceTimeout = TimeSpan.FromSeconds(60);
    private readonly Random _random = new(seed);
    private readonly List<TimelinePoint> _timeline = [];
    private readonly TrafficCounters _traffic = new();
    private readonly Stopwatch _clock = new();
    private DeliveryLedger _ledger = null!;
    private ChurnLedger _churn = null!;
    private IReadOnlyList<SimulatedAgent> _agents = [];
    // Nodes that joined during the churn; guarded by itself.
    private readonly List<SimulatedAgent> _transient = [];
    // Churn work that runs beside the phase (deletes, policy edits, ephemeral disconnects); guarded by itself.
    private readonly List<Task> _background = [];
    private readonly ThinPeers _thinPeers = new();
    private int[][] _measuredInGroup = [];
    private Task[] _policyEdits = [];
    private int[] _policyMarkers = [];
    private ActorSystem _system = null!;
    private ChannelPool _channels = null!;
    private string _phase = "setup";
    private readonly LongConcurrentHistogram _timeToFirstMap = LatencyHistograms.Concurrent();

    /// <summary>Called once a second with where the run stands.</summary>
    public Action<RunProgress>? Progress { get; init; }

    /// <summary>For one shard of a run in several processes: where it waits for the others (<see cref="ShardBarrier"/>).</summary>
    public ShardBarrier? Barrier { get; init; }

    private List<LoadTailnet> _tailnets = [];

    public async Task<LoadResult> RunAsync(CancellationToken cancel = default)
    {
        try
        {
            return await RunShardOrWholeAsync(cancel);
        }
        catch (Exception e) when (Barrier is not null)
        {
            Barrier.Abandon($"{e.GetType().Name}: {e.Message}");
            throw;
        }
    }

    private async Task<LoadResult> RunShardOrWholeAsync(CancellationToken cancel)
    {
        var startedAt = DateTimeOffset.UtcNow;
        _clock.Start();
        var tailnets = _tailnets = await CreateTailnetsAsync();
        await Arrive("tailnets", cancel);
        _agents = Layout();
        _ledger = new DeliveryLedger(_agents.Count);
        _churn = new ChurnLedger(tailnets.Count);
        _policyEdits = [.. tailnets.Select(_ => Task.CompletedTask)];
        _policyMarkers = new int[tailnets.Count];
        using var system = _system = AgentActorSystem.Create("weft-loadtest");
        var channels = _channels = new ChannelPool(scenario.StreamsPerConnection);
        using var ticker = new Timer(_ => Tick(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        try
        {
            var memoryBefore = MemorySnapshot.Take(cluster.SampledProcesses);
            var join = await JoinAsync(cancel);
            // With shards, the coordinators are sampled once every shard's nodes are in.
            await Arrive("joined", cancel);
            var memoryAfter = MemorySnapshot.Take(cluster.SampledProcesses);

            var phases = new List<(int Index, PhaseResult Result)>();
            foreach (var (phase, number) in scenario.Phases.Select((p, i) => (p, i)))
            {
                await Arrive($"phase-{number}", cancel);
                phases.Add(await ChurnAsync(phase, cancel));
            }

            _phase = "drain";
            await DrainAsync(cancel);
            await Arrive("drained", cancel);
            var memoryAtEnd = MemorySnapshot.Take(cluster.SampledProcesses);
            _phase = "check";
            var convergence = await CheckConvergenceAsync(tailnets.Select(t => t.Id).ToList(), cancel);
            var delivery = new DeliveryResult(
                _ledger.ExpectedPairs, _ledger.Delivered, _ledger.Superseded, Math.Max(0, _ledger.Outstanding), _ledger.Duplicated, _ledger.OutOfOrder,
                _traffic.Deltas, _traffic.Deltas == 0 ? 0 : (double)_traffic.DeltaBytes / _traffic.Deltas,
                _traffic.FullMaps, _traffic.FullMaps == 0 ? 0 : (double)_traffic.FullMapBytes / _traffic.FullMaps, _traffic.LargestFullMap);
            lock (_timeline)
                return new LoadResult
                {
                    Scenario = scenario.Name,
                    StartedAt = startedAt,
                    Nodes = _agents.Count,
                    Tailnets = tailnets.Count,
                    Coordinators = cluster.Control.Count,
                    Join = join,
                    // Summarised only now that nothing records any more: late deliveries count in their change's phase.
                    Phases = [.. phases.Select(p => p.Result with { Latency = Summarize(_ledger.PhaseLatencies[p.Index]) })],
                    Latency = Summarize(_ledger.Latencies),
                    Delivery = delivery,
                    Convergence = convergence,
                    Memory = MemorySnapshot.PerNode(memoryBefore, memoryAfter, memoryAtEnd, _agents.Count),
                    Timeline = [.. _timeline],
                    Churn = _churn.Summarize(Summarize),
                    PolicyGroups = scenario.PolicyGroups,
                    ThinAgents = _agents.Count(a => a.Thin),
                    Shard = Barrier?.Shard.ToString(),
                    Histograms = new HistogramSet(
                        HistogramCodec.Encode(_ledger.Latencies),
                        [.. phases.Select(p => HistogramCodec.Encode(_ledger.PhaseLatencies[p.Index]))],
                        _churn.LatencyByKind.ToDictionary(k => k.Key, k => HistogramCodec.Encode(k.Value)),
                        HistogramCodec.Encode(_timeToFirstMap)),
                };
        }
        finally
        {
            await system.Terminate();
            channels.Dispose();
        }
    }

    /// <summary>
    /// Removes the run's tailnets from an existing cluster, after the result is written. A cluster
    /// that no longer answers (a chaos phase may have taken it down) is not waited on tailnet by tailnet.
    /// </summary>
    public async Task DeleteTailnetsAsync()
    {
        foreach (var id in _tailnets.Select(t => t.Id))
        {
            try
            {
                await cluster.DeleteTailnetAsync(id);
            }
            catch (Exception e)
            {
                log.WriteLine($"warning: could not delete tailnet {id} ({e.Message}); the run's other tailnets (load-*) stay too");
                return;
            }
        }
    }

    private async Task<List<LoadTailnet>> CreateTailnetsAsync()
    {
        _phase = "tailnets";
        var run = Guid.NewGuid().ToString("N")[..6];
        var names = Enumerable.Range(0, scenario.TotalTailnets).Select(i => $"load-{run}-{i}").ToList();
        var made = new LoadTailnet[names.Count];
        var ephemeral = scenario.Phases.Any(p => p.EphemeralPerSecond > 0);
        await Parallel.ForEachAsync(Enumerable.Range(0, names.Count), new ParallelOptions { MaxDegreeOfParallelism = 8 },
            async (i, _) => made[i] = await cluster.CreateTailnetAsync(names[i], scenario.PolicyGroups, scenario.TaggedPolicy, ephemeral, scenario.EphemeralTimeoutSeconds));
        return [.. made];
    }

    /// <summary>
    /// The agents, tailnet by tailnet, dealt round-robin into the policy groups, each knowing how many
    /// peers it should come to hold (the rest of its group).
    /// </summary>
    private List<SimulatedAgent> Layout()
    {
        var agents = new List<SimulatedAgent>(scenario.TotalNodes);
        var measured = new List<int[]>();
        var tailnet = 0;
        foreach (var size in scenario.Tailnets)
            for (var t = 0; t < size.Count; t++, tailnet++)
            {
                var groups = new int[scenario.PolicyGroups];
                for (var n = 0; n < size.Nodes; n++) groups[n % groups.Length]++;
                measured.Add(groups);
                for (var n = 0; n < size.Nodes; n++)
                {
                    var peers = groups[n % groups.Length] - 1;
                    agents.Add(new SimulatedAgent(agents.Count, tailnet, n % groups.Length, peers)
                    {
                        Thin = peers > scenario.ThinAbovePeers && agents.Count % scenario.FullSampleEvery != 0,
                    });
                }
            }
        _measuredInGroup = [.. measured];
        return agents;
    }

    /// <summary>Starts a simulated node's ControlClient; <paramref name="onObserved"/> runs on its actor thread after each message.</summary>
    private IActorRef Spawn(SimulatedAgent agent, string authKey, Action? onObserved = null) =>
        _system.ActorOf(ControlClient.PropsFor(new ControlClientOptions
        {
            Coordinators = Rotate(cluster.Control, agent.Index),
            StateStore = new MemoryAgentStateStore(),
            Hostname = agent.Name,
            AuthKey = authKey,
            Endpoints = [ChangeEndpoint.AtJoin(agent.Index)],
            SharedChannels = url => _channels.For(url, agent.Index),
            PeerRecord = agent.Thin ? _thinPeers.Of : null,
            Observer = (message, applied, store) =>
            {
                agent.Observe(message, applied, store, _ledger, _churn, _traffic);
                onObserved?.Invoke();
            },
        }), agent.Name);

    private async Task<JoinResult> JoinAsync(CancellationToken cancel)
    {
        _phase = "join";
        var timeToFirstMap = _timeToFirstMap;
        using var inFlight = new SemaphoreSlim(scenario.JoinsInFlight);
        var started = Stopwatch.GetTimestamp();
        // Round-robin over the tailnets, as a fleet that boots together would arrive: every tailnet's
        // first node, then every tailnet's second, and so on.
        var order = _agents.GroupBy(a => a.Tailnet).SelectMany(tailnet => tailnet.Select((agent, position) => (agent, position)))
            .OrderBy(p => p.position).ThenBy(p => p.agent.Tailnet).Select(p => p.agent).ToList();
        var deadline = started + (long)(JoinTimeout.TotalSeconds * Stopwatch.Frequency);
        foreach (var agent in order)
        {
            if (!await inFlight.WaitAsync(TimeSpan.FromSeconds(Math.Max(1, Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline).TotalSeconds)), cancel))
                throw new TimeoutException($"joins stalled: {_agents.Count(a => a.Joined)} of {_agents.Count} nodes joined in {JoinTimeout}");
            var spawned = Stopwatch.GetTimestamp();
            var released = 0;
            agent.Actor = Spawn(agent, _tailnets[agent.Tailnet].Keys[agent.Group], () =>
            {
                if (agent.Joined && Interlocked.Exchange(ref released, 1) == 0)
                {
                    timeToFirstMap.RecordValue(LatencyHistograms.Between(spawned, Stopwatch.GetTimestamp()));
                    inFlight.Release();
                }
            });
        }
        await Until(() => _agents.All(a => a.Joined), JoinTimeout, "every node's first netmap", cancel);
        var joinedSeconds = Stopwatch.GetElapsedTime(started, _agents.Max(a => a.JoinedAt)).TotalSeconds;
        await Until(() => _agents.All(a => a.Meshed), JoinTimeout, "every node holding its whole tailnet", cancel);
        var meshedSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        log.WriteLine($"joined {_agents.Count} nodes in {joinedSeconds:0.0} s ({_agents.Count / joinedSeconds:0} joins/s), all meshed after {meshedSeconds:0.0} s");
        return new JoinResult(_agents.Count, joinedSeconds, _agents.Count / Math.Max(joinedSeconds, 1e-3), meshedSeconds, Summarize(timeToFirstMap));
    }

    private static IReadOnlyList<Uri> Rotate(IReadOnlyList<Uri> coordinators, int by) =>
        [.. coordinators.Skip(by % coordinators.Count), .. coordinators.Take(by % coordinators.Count)];

    private async Task<(int Index, PhaseResult Result)> ChurnAsync(ChurnPhase phase, CancellationToken cancel)
    {
        _phase = phase.Name;
        var index = _ledger.BeginPhase();
        var firstChange = _ledger.Changes;
        var delivered = _ledger.Delivered;
        log.WriteLine($"phase {phase.Name}: {phase.Seconds} s, {phase.EndpointChangesPerSecond} endpoint changes/s, {phase.KeyRotationsPerSecond} rotations/s" +
            (phase.JoinsPerSecond > 0 ? $", {phase.JoinsPerSecond} joins/s" : "") + (phase.LeavesPerSecond > 0 ? $", {phase.LeavesPerSecond} leaves/s" : "") +
            (phase.EphemeralPerSecond > 0 ? $", {phase.EphemeralPerSecond} ephemeral nodes/s" : "") + (phase.PolicyEditsPerSecond > 0 ? $", {phase.PolicyEditsPerSecond} policy edits/s" : "") +
            (phase.ReconnectStorm ? ", reconnect storm" : "") + (phase.ChaosCommand is { } c ? $", at {phase.ChaosAtSecond} s: {c}" : ""));
        if (phase.ReconnectStorm)
            foreach (var agent in _agents)
                agent.Actor.Tell(new Reconnect(TimeSpan.FromMilliseconds(_random.NextDouble() * phase.ReconnectSpreadSeconds * 1000)));

        long? chaosAt = null;
        var fullMapsBefore = FullMapsSoFar();
        var cpuBefore = CoordinatorCpu();
        var pauses = new GcPauseWatch();
        var started = Stopwatch.GetTimestamp();
        double changesDue = 0, rotationsDue = 0, joinsDue = 0, leavesDue = 0, ephemeralDue = 0, editsDue = 0;
        while (true)
        {
            var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
            if (elapsed >= phase.Seconds) break;
            if (phase.HasChaos && chaosAt is null && elapsed >= phase.ChaosAtSecond)
            {
                chaosAt = Stopwatch.GetTimestamp();
                if (phase.ChaosCommand is { } command) await RunChaosAsync(command);
                if (phase.ChaosAction is { } action) await action();
            }
            for (; changesDue < elapsed * phase.EndpointChangesPerSecond; changesDue++) MakeEndpointChange();
            for (; rotationsDue < elapsed * phase.KeyRotationsPerSecond; rotationsDue++)
                _agents[_random.Next(_agents.Count)].Actor.Tell(RotateNodeKeyNow.Instance);
            for (; joinsDue < elapsed * phase.JoinsPerSecond; joinsDue++) JoinDuringChurn(ephemeral: false);
            for (; ephemeralDue < elapsed * phase.EphemeralPerSecond; ephemeralDue++) JoinDuringChurn(ephemeral: true);
            for (; leavesDue < elapsed * phase.LeavesPerSecond; leavesDue++) Leave();
            for (; editsDue < elapsed * phase.PolicyEditsPerSecond; editsDue++) EditPolicy();
            pauses.Sample();
            await Task.Delay(5, cancel);
        }
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var cpuAfter = CoordinatorCpu();

        double? converge = null;
        if (chaosAt is { } at)
        {
            // Every change made from a second before the chaos to five seconds after it must reach every peer: when the last did is the cluster's recovery.
            await DrainAsync(cancel);
            var window = (long)(Stopwatch.Frequency * 1.0);
            if (_ledger.AllSettledAt(at - window, at + 5 * window) is { } settled) converge = Math.Max(0, Stopwatch.GetElapsedTime(at, settled).TotalSeconds);
        }
        var changes = _ledger.Changes - firstChange;
        return (index, new PhaseResult(phase.Name, seconds, changes, changes / seconds, _ledger.Delivered - delivered,
            (_ledger.Delivered - delivered) / seconds, LatencySummary.Empty, converge)
        {
            CoordinatorCpuSeconds = cpuBefore is { } b && cpuAfter is { } a ? a - b : null,
            GeneratorGcPauseSeconds = pauses.Total.TotalSeconds,
            GeneratorLongestGcPauseMs = pauses.Longest.TotalMilliseconds,
            GeneratorCollections = pauses.Collections,
            FullMaps = FullMapsSince(fullMapsBefore),
        });
    }

    /// <summary>The fleet's full maps so far: the traffic counters, and each node's count (nodes that join during the churn included).</summary>
    private (long Maps, long Bytes, Dictionary<SimulatedAgent, int> ByAgent) FullMapsSoFar()
    {
        lock (_transient) return (_traffic.FullMaps, _traffic.FullMapBytes, _agents.Concat(_transient).ToDictionary(a => a, a => a.FullMapsReceived));
    }

    private FullMapCount FullMapsSince((long Maps, long Bytes, Dictionary<SimulatedAgent, int> ByAgent) before)
    {
        var now = FullMapsSoFar();
        var several = now.ByAgent.Count(a => a.Value - before.ByAgent.GetValueOrDefault(a.Key) >= 2);
        return new FullMapCount(now.Maps - before.Maps, now.Bytes - before.Bytes, several);
    }

    /// <summary>The sampled coordinators' CPU seconds so far; null when none is sampled or one is gone (a chaos phase kills one).</summary>
    private double? CoordinatorCpu()
    {
        if (cluster.SampledProcesses.Count == 0) return null;
        double total = 0;
        foreach (var pid in cluster.SampledProcesses)
        {
            if (ProcessSampler.Read(pid) is not { } sample) return null;
            total += sample.CpuSeconds;
        }
        return total;
    }

    private void MakeEndpointChange()
    {
        var agent = _agents[_random.Next(_agents.Count)];
        var sequence = _ledger.Record(agent.Index, recipients: agent.ExpectedPeers);
        agent.ReportedEndpoint = ChangeEndpoint.For(sequence);
        agent.Actor.Tell(new SetEndpoints([agent.ReportedEndpoint], 0));
    }

    /// <summary>
    /// A node joins a random tailnet and group during the churn; its group's measured nodes must come
    /// to hold it. An ephemeral one disconnects once they all do, and must then be removed from them.
    /// </summary>
    private void JoinDuringChurn(bool ephemeral)
    {
        var tailnet = _random.Next(_tailnets.Count);
        var group = _random.Next(scenario.PolicyGroups);
        SimulatedAgent agent;
        lock (_transient)
        {
            agent = new SimulatedAgent(_agents.Count + _transient.Count, tailnet, group, expectedPeers: -1, measured: false) { Ephemeral = ephemeral };
            _transient.Add(agent);
        }
        agent.JoinEvent = _churn.Begin(ChurnKind.Joined, tailnet, group, _measuredInGroup[tailnet][group], Stopwatch.GetTimestamp(), name: agent.Name);
        var keys = _tailnets[tailnet];
        agent.Actor = Spawn(agent, ephemeral ? keys.EphemeralKeys[group]! : keys.Keys[group]);
        if (ephemeral) Background(DisconnectOnceSeenAsync(agent));
    }

    private async Task DisconnectOnceSeenAsync(SimulatedAgent agent)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(DrainTimeout.TotalSeconds * Stopwatch.Frequency);
        while (!(agent.Joined && _churn.IsSettled(agent.Tailnet, agent.JoinEvent)))
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                log.WriteLine($"warning: ephemeral node {agent.Name} was not seen by its peers in {DrainTimeout}; it stays connected");
                return;
            }
            await Task.Delay(100);
        }
        agent.Gone = true;
        _churn.Begin(ChurnKind.EphemeralGone, agent.Tailnet, agent.Group, _measuredInGroup[agent.Tailnet][agent.Group], Stopwatch.GetTimestamp(), deviceId: agent.DeviceId);
        _system.Stop(agent.Actor);
    }

    /// <summary>An admin deletes a node that joined during the churn (and that its peers already hold); they must drop it.</summary>
    private void Leave()
    {
        SimulatedAgent? leaving;
        lock (_transient)
        {
            var candidates = _transient.Where(a => !a.Ephemeral && !a.Gone && a.Joined && _churn.IsSettled(a.Tailnet, a.JoinEvent)).ToList();
            if (candidates.Count == 0) return;
            leaving = candidates[_random.Next(candidates.Count)];
            leaving.Gone = true;
        }
        _churn.Begin(ChurnKind.Left, leaving.Tailnet, leaving.Group, _measuredInGroup[leaving.Tailnet][leaving.Group], Stopwatch.GetTimestamp(), deviceId: leaving.DeviceId);
        Background(DeleteAsync(leaving));
    }

    private async Task DeleteAsync(SimulatedAgent agent)
    {
        try
        {
            await cluster.DeleteDeviceAsync(_tailnets[agent.Tailnet].Id, agent.DeviceId!);
        }
        catch (Exception e)
        {
            log.WriteLine($"warning: deleting {agent.Name} ({agent.DeviceId}) failed: {e.Message}");
        }
        _system.Stop(agent.Actor);
    }

    /// <summary>
    /// Edits a random tailnet's policy: every measured node of it must come to hold a filter with the
    /// edit's marker. Edits of one tailnet go one after another, so the last one sent is the one in force.
    /// </summary>
    private void EditPolicy()
    {
        var tailnet = _random.Next(_tailnets.Count);
        var marker = ++_policyMarkers[tailnet];
        if (marker >= LoadPolicy.MarkerPorts) return;
        var recipients = _measuredInGroup[tailnet].Sum();
        var previous = _policyEdits[tailnet];
        _policyEdits[tailnet] = Background(EditAsync());

        async Task EditAsync()
        {
            await previous;
            _churn.Begin(ChurnKind.PolicyEdited, tailnet, group: -1, recipients, Stopwatch.GetTimestamp(), marker: marker);
            try
            {
                await cluster.SetPolicyAsync(_tailnets[tailnet].Id, LoadPolicy.Text(scenario.PolicyGroups, marker));
            }
            catch (Exception e)
            {
                log.WriteLine($"warning: policy edit {marker} of tailnet {_tailnets[tailnet].Id} failed: {e.Message}");
            }
        }
    }

    private Task Arrive(string point, CancellationToken cancel) => Barrier?.ArriveAsync(point, cancel) ?? Task.CompletedTask;

    private Task Background(Task work)
    {
        lock (_background) _background.Add(work);
        return work;
    }

    private async Task RunChaosAsync(string command)
    {
        log.WriteLine($"chaos: {command}");
        using var process = Process.Start(new ProcessStartInfo("/bin/sh") { ArgumentList = { "-c", command }, RedirectStandardOutput = true, RedirectStandardError = true })
            ?? throw new InvalidOperationException($"could not run '{command}'");
        var output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (output.Length > 0) log.WriteLine(output.TrimEnd());
        if (process.ExitCode != 0) throw new InvalidOperationException($"the chaos command '{command}' failed with exit code {process.ExitCode}");
    }

    /// <summary>Waits until every change reached every peer (or the drain times out: what is left is loss).</summary>
    private async Task DrainAsync(CancellationToken cancel)
    {
        try
        {
            Task[] background;
            lock (_background) background = [.. _background];
            await Task.WhenAll(background).WaitAsync(DrainTimeout, cancel);
            await Until(() => _ledger.Unsettled == 0 && _churn.Unsettled == 0, DrainTimeout, "every change reaching every peer", cancel);
        }
        catch (TimeoutException e)
        {
            log.WriteLine($"warning: {e.Message}; {_ledger.Unsettled} change(s) and {_churn.Unsettled} churn event(s) unsettled count as lost");
        }
    }

    private async Task<ConvergenceResult> CheckConvergenceAsync(IReadOnlyList<string> tailnetIds, CancellationToken cancel)
    {
        List<SimulatedAgent> Live()
        {
            lock (_transient) return [.. _agents, .. _transient.Where(a => !a.Gone)];
        }
        return await ConvergenceCheck.UntilConvergedAsync(
            () => ConvergenceCheck.RunAsync(cluster, tailnetIds, Live()), Live().Count, ConvergenceTimeout, TimeSpan.FromSeconds(2), log, cancel);
    }

    private void Tick()
    {
        if (_ledger is null) return;
        var interval = Summarize(_ledger.TakeInterval());
        var point = new TimelinePoint(Math.Round(_clock.Elapsed.TotalSeconds), _phase, interval.Count, interval.P50, interval.P99, _agents.Count(a => a.Joined));
        lock (_timeline) _timeline.Add(point);
        Progress?.Invoke(new RunProgress(_phase, _clock.Elapsed.TotalSeconds, _agents.Count, point.Joined, _agents.Count(a => a.Meshed),
            _ledger.Changes, _ledger.Delivered, _ledger.Unsettled, point));
    }

    /// <summary>
    /// Percentiles in milliseconds. A histogram that is still being recorded into (the last second's,
    /// just swapped out) may change under the reader: it is read again.
    /// </summary>
    internal static LatencySummary Summarize(HistogramBase histogram)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                if (histogram.TotalCount == 0) return LatencySummary.Empty;
                double Ms(double p) => histogram.GetValueAtPercentile(p) / 1000.0;
                return new LatencySummary(histogram.TotalCount, Ms(50), Ms(90), Ms(99), Ms(99.9), histogram.GetMaxValue() / 1000.0);
            }
            catch (InvalidOperationException) when (attempt < 10)
            {
                Thread.Sleep(1);
            }
        }
    }

    private static async Task Until(Func<bool> condition, TimeSpan timeout, string what, CancellationToken cancel)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (!condition())
        {
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException($"timed out after {timeout} waiting for {what}");
            await Task.Delay(50, cancel);
        }
    }

    /// <summary>HTTP/2 connections to each coordinator, each carrying so many agents' streams.</summary>
    private sealed class ChannelPool(int streamsPerConnection) : IDisposable
    {
        private readonly Dictionary<(Uri, int), GrpcChannel> _channels = new();

        public GrpcChannel For(Uri coordinator, int agentIndex)
        {
            var key = (coordinator, agentIndex / streamsPerConnection);
            lock (_channels)
            {
                if (!_channels.TryGetValue(key, out var channel)) _channels[key] = channel = ControlConnection.CreateChannel(coordinator);
                return channel;
            }
        }

        public void Dispose()
        {
            lock (_channels)
                foreach (var channel in _channels.Values) channel.Dispose();
        }
    }
}

/// <summary>Memory before and after the fleet joined: the generator's heap and RSS, and each sampled coordinator's RSS and CPU.</summary>
internal sealed record MemorySnapshot(long GeneratorHeap, long GeneratorRss, IReadOnlyList<(int Pid, ProcessSampler.Sample? Sample)> Coordinators)
{
    public static MemorySnapshot Take(IReadOnlyList<int> coordinatorProcesses)
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        var heap = GC.GetTotalMemory(forceFullCollection: true);
        using var self = Process.GetCurrentProcess();
        return new MemorySnapshot(heap, self.WorkingSet64, coordinatorProcesses.Select(pid => (pid, ProcessSampler.Read(pid))).ToList());
    }

    /// <param name="atEnd">Once the churn has drained: the steady state, with every device's delta log filled and idle entities stopped.</param>
    public static MemoryResult PerNode(MemorySnapshot before, MemorySnapshot after, MemorySnapshot atEnd, int nodes)
    {
        var samples = before.Coordinators.Zip(after.Coordinators, atEnd.Coordinators).Select(s =>
            new CoordinatorSample(s.First.Pid, s.First.Sample?.RssBytes ?? 0, s.Second.Sample?.RssBytes ?? 0, (s.Second.Sample?.CpuSeconds ?? 0) - (s.First.Sample?.CpuSeconds ?? 0))
            {
                RssBytesAtEnd = s.Third.Sample?.RssBytes ?? 0,
            }).ToList();
        var measured = samples.Where(s => s.RssBytesBefore > 0 && s.RssBytesAfter > 0).ToList();
        // A process killed by a chaos phase has no end: the figure covers the processes that lived through the run.
        var lasted = samples.Where(s => s.RssBytesBefore > 0 && s.RssBytesAtEnd > 0).ToList();
        return new MemoryResult((double)(after.GeneratorHeap - before.GeneratorHeap) / nodes, (double)(after.GeneratorRss - before.GeneratorRss) / nodes, samples)
        {
            CoordinatorKbPerDevice = measured.Count == 0 ? null : measured.Sum(s => (double)(s.RssBytesAfter - s.RssBytesBefore)) / 1024 / nodes,
            CoordinatorKbPerDeviceAtEnd = lasted.Count == 0 ? null : lasted.Sum(s => (double)(s.RssBytesAtEnd - s.RssBytesBefore)) / 1024 / nodes,
        };
    }
}
