// The control-plane benchmark: propagation latency of endpoint changes through a real coordinator to
// real agents, and how the coordinator's work per change grows with the tailnet.
using System.Collections.Concurrent;
using System.Diagnostics;
using Akka.Actor;
using HdrHistogram;
using Weft.Contracts.Control;
using Weft.LoadTest.Coordinators;
using Weft.LoadTest.Measurement;
using Weft.NodeAgent.Control;

var sizes = ArgValue("--sizes", "50,200,1000").Split(',').Select(int.Parse).ToArray();
var rate = double.Parse(ArgValue("--changes-per-second", "10"));
var seconds = double.Parse(ArgValue("--seconds", "15"));

await using var coordinator = await TargetCluster.StartLocalAsync(Console.Error);
// A discarded round first: JIT tiering and connection pools settle before anything is measured.
await RunSize(coordinator, Math.Min(50, sizes.Min()), rate, Math.Min(seconds, 5));
var results = new List<SizeResult>();
foreach (var size in sizes)
{
    var result = await RunSize(coordinator, size, rate, seconds);
    results.Add(result);
    Console.WriteLine(
        $"n={size}: changes={result.Changes} deliveries={result.Deliveries}/{result.Expected} p50_ms={result.P50:0.0} p90_ms={result.P90:0.0} p99_ms={result.P99:0.0} " +
        $"max_ms={result.Max:0.0} deltas_per_s={result.DeltasPerSecond:0} full_maps_during={result.FullMapsDuringMeasurement} server_cpu_ms_per_change={result.CpuPerChangeMs:0.000} server_idle_cpu_ms_per_s={result.IdleCpuMsPerSecond:0.0}");
}

var largest = results.Last();
var ratio = results.FirstOrDefault(r => r.Size == 1000) is { } big && results.FirstOrDefault(r => r.Size == 200) is { } mid
    ? (big.CpuPerChangeMs / mid.CpuPerChangeMs).ToString("0.00")
    : "n/a";
Console.WriteLine($"control: n={largest.Size} p50_ms={largest.P50:0.0} p99_ms={largest.P99:0.0} deltas_per_s={largest.DeltasPerSecond:0} per_change_cost_ratio_1000_vs_200={ratio}");
return 0;

static async Task<SizeResult> RunSize(TargetCluster coordinator, int size, double rate, double seconds)
{
    var made = await coordinator.CreateTailnetAsync($"bench-{size}-{Guid.NewGuid():N}"[..24]);
    var (tailnet, key) = (made.Id, made.Keys[0]);
    using var system = Weft.NodeAgent.Agent.AgentActorSystem.Create("bench-agents");

    // Each agent has its own stream; streams share a few HTTP/2 connections, as a NAT'd fleet would not, but a load generator must.
    var channels = Enumerable.Range(0, Math.Max(1, size / 100)).Select(_ => ControlConnection.CreateChannel(coordinator.Control[0])).ToArray();
    var probe = new PropagationProbe(size);
    var agents = new IActorRef[size];
    for (var i = 0; i < size; i++)
    {
        var channel = channels[i % channels.Length];
        agents[i] = system.ActorOf(ControlClient.PropsFor(new ControlClientOptions
        {
            Coordinators = coordinator.Control,
            StateStore = new MemoryAgentStateStore(),
            Hostname = $"sim-{i}",
            AuthKey = key,
            Endpoints = [$"198.18.250.{i % 250}:{41641 + i}"],
            SharedChannels = _ => channel,
            Observer = probe.Observe,
        }));
        if (i % 50 == 49) await probe.WaitForJoined(i + 1, TimeSpan.FromMinutes(3));
    }
    await probe.WaitForFullMesh(TimeSpan.FromMinutes(5));
    await probe.WaitForQuiet(TimeSpan.FromSeconds(2), TimeSpan.FromMinutes(2));

    // Warm-up, not measured: the same path at the same rate, so that JIT and caches are settled.
    for (var i = 0; i < Math.Min(size, (int)(rate * 3)); i++)
    {
        agents[i].Tell(new SetEndpoints([$"198.18.251.{i % 250}:{10000 + i}"], 0));
        await Task.Delay(TimeSpan.FromSeconds(1 / rate));
    }
    await probe.WaitForQuiet(TimeSpan.FromSeconds(2), TimeSpan.FromMinutes(2));

    // The coordinator's background work (pings, presence heartbeats, cluster gossip) at this size,
    // measured now with no changes, is subtracted: what remains is the work the changes caused.
    var idleWindow = TimeSpan.FromSeconds(Math.Min(seconds, 5));
    var idleBefore = CpuTime(coordinator);
    await Task.Delay(idleWindow);
    var idlePerSecond = (CpuTime(coordinator) - idleBefore).TotalMilliseconds / idleWindow.TotalSeconds;

    var changes = (int)(rate * seconds);
    probe.StartMeasuring(changes);
    var cpuBefore = CpuTime(coordinator);
    var started = Stopwatch.GetTimestamp();
    for (var seq = 0; seq < changes; seq++)
    {
        var due = started + (long)(seq / rate * Stopwatch.Frequency);
        var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
        if (wait > TimeSpan.Zero) await Task.Delay(wait);
        probe.Sent(seq);
        agents[seq % size].Tell(new SetEndpoints([PropagationProbe.EndpointFor(seq)], 0));
    }
    await probe.WaitForDeliveries(TimeSpan.FromSeconds(60));
    var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
    var cpuMs = (CpuTime(coordinator) - cpuBefore).TotalMilliseconds;
    var changeCpuMs = Math.Max(0, cpuMs - idlePerSecond * elapsed);

    await system.Terminate();
    foreach (var channel in channels) channel.Dispose();
    await coordinator.DeleteTailnetAsync(tailnet);

    var histogram = probe.Latencies;
    double Ms(double percentile) => histogram.GetValueAtPercentile(percentile) / 1000.0;
    return new SizeResult(size, changes, probe.Deliveries, (long)changes * (size - 1), Ms(50), Ms(90), Ms(99), histogram.GetMaxValue() / 1000.0,
        probe.DeltasApplied / elapsed, probe.FullMapsDuringMeasurement, changeCpuMs / changes, idlePerSecond);
}

// The coordinator runs as its own process, so that its CPU time is its own.
static TimeSpan CpuTime(TargetCluster coordinator) =>
    TimeSpan.FromSeconds(ProcessSampler.Read(coordinator.SampledProcesses[0])?.CpuSeconds ?? throw new InvalidOperationException("the coordinator process is gone"));

static string ArgValue(string name, string fallback)
{
    var args = Environment.GetCommandLineArgs();
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? args[index + 1] : fallback;
}

internal sealed record SizeResult(
    int Size, int Changes, long Deliveries, long Expected, double P50, double P90, double P99, double Max, double DeltasPerSecond,
    long FullMapsDuringMeasurement, double CpuPerChangeMs, double IdleCpuMsPerSecond);

/// <summary>
/// Watches every agent's store: who has joined and holds the full mesh, and — while measuring —
/// how long each endpoint change took to reach each peer. A change's sequence number travels in
/// the endpoint's port, so a delivery identifies its change without any side channel.
/// </summary>
internal sealed class PropagationProbe(int size)
{
    private const int BasePort = 20000;
    private readonly ConcurrentDictionary<NetMapStore, bool> _meshed = new();
    private readonly ConcurrentDictionary<NetMapStore, bool> _joined = new();
    private long[] _sentAt = [];
    private volatile bool _measuring;
    private long _lastActivity = Stopwatch.GetTimestamp();
    private long _deliveries;
    private long _deltas;
    private long _fullMaps;
    private long _expected;
    private readonly TaskCompletionSource _allDelivered = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public LongConcurrentHistogram Latencies { get; } = new(1, 60_000_000, 3); // microseconds

    public long Deliveries => Interlocked.Read(ref _deliveries);

    public long DeltasApplied => Interlocked.Read(ref _deltas);

    public long FullMapsDuringMeasurement => Interlocked.Read(ref _fullMaps);

    public static string EndpointFor(int seq) => $"198.18.{seq / 256 % 256}.{seq % 256}:{BasePort + seq}";

    public void Observe(ServerMessage message, NetMapApplied outcome, NetMapStore store)
    {
        var now = Stopwatch.GetTimestamp();
        Interlocked.Exchange(ref _lastActivity, now);
        _joined.TryAdd(store, true);
        if (store.HasMap && store.PeerCount == size - 1) _meshed.TryAdd(store, true);
        if (!_measuring) return;
        if (message.BodyCase == ServerMessage.BodyOneofCase.Netmap)
        {
            Interlocked.Increment(ref _fullMaps);
            return;
        }
        if (outcome != NetMapApplied.Patched) return;
        Interlocked.Increment(ref _deltas);
        foreach (var patch in message.Delta.Patches)
        {
            if (patch.Endpoints is not { Endpoints.Count: 1 } endpoints) continue;
            var text = endpoints.Endpoints[0];
            var seq = int.Parse(text.AsSpan(text.LastIndexOf(':') + 1)) - BasePort;
            if (seq < 0 || seq >= _sentAt.Length) continue;
            var sent = Volatile.Read(ref _sentAt[seq]);
            if (sent == 0) continue;
            Latencies.RecordValue(Math.Max(1, (long)Stopwatch.GetElapsedTime(sent, now).TotalMicroseconds));
            if (Interlocked.Increment(ref _deliveries) == Interlocked.Read(ref _expected)) _allDelivered.TrySetResult();
        }
    }

    public void StartMeasuring(int changes)
    {
        _sentAt = new long[changes];
        Interlocked.Exchange(ref _expected, (long)changes * (size - 1));
        _measuring = true;
    }

    public void Sent(int seq) => Volatile.Write(ref _sentAt[seq], Stopwatch.GetTimestamp());

    public Task WaitForJoined(int count, TimeSpan timeout) => Until(() => _joined.Count >= count, timeout, $"{count} agents joined");

    public Task WaitForFullMesh(TimeSpan timeout) => Until(() => _meshed.Count >= size, timeout, $"all {size} agents holding {size - 1} peers");

    public Task WaitForQuiet(TimeSpan quiet, TimeSpan timeout) =>
        Until(() => Stopwatch.GetElapsedTime(Interlocked.Read(ref _lastActivity)) >= quiet, timeout, "the tailnet settling");

    public async Task WaitForDeliveries(TimeSpan timeout)
    {
        try
        {
            await _allDelivered.Task.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            Console.Error.WriteLine($"warning: {Deliveries} of {_expected} deliveries arrived; the rest are counted as lost");
        }
    }

    private static async Task Until(Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (!condition())
        {
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException($"timed out waiting for {what}");
            await Task.Delay(50);
        }
    }
}
