namespace Weft.LoadTest.Reporting;

/// <summary>Everything a load run measured; written as JSON, and the source of the Markdown report.</summary>
public sealed record LoadResult
{
    public required string Scenario { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public required int Nodes { get; init; }
    public required int Tailnets { get; init; }
    public required int Coordinators { get; init; }
    public required JoinResult Join { get; init; }
    public required IReadOnlyList<PhaseResult> Phases { get; init; }
    /// <summary>Propagation over every phase.</summary>
    public required LatencySummary Latency { get; init; }
    public required DeliveryResult Delivery { get; init; }
    public required ConvergenceResult Convergence { get; init; }
    public required MemoryResult Memory { get; init; }
    public required IReadOnlyList<TimelinePoint> Timeline { get; init; }
    /// <summary>Joins, leaves, ephemeral expiry and policy edits during the churn, each followed to its peers (empty when the phases had none).</summary>
    public IReadOnlyList<ChurnKindResult> Churn { get; init; } = [];
    /// <summary>Tagged groups per tailnet that see only themselves (1: everyone sees everyone).</summary>
    public int PolicyGroups { get; init; } = 1;
    /// <summary>How many of the nodes kept thin peer records (the rest, full ones).</summary>
    public int ThinAgents { get; init; }
    /// <summary>Which generator process's part this is ("2/3"); null for a run in one process, or shards merged.</summary>
    public string? Shard { get; init; }
    /// <summary>How many shards' results were merged into this one (1: a run in one process).</summary>
    public int ShardsMerged { get; init; } = 1;
    /// <summary>The latency histograms themselves, so that shards' results can be merged; null in results that predate them.</summary>
    public HistogramSet? Histograms { get; init; }

    /// <summary>Every change reached every peer (delivered or superseded), none twice, none backwards, and every store equals the cluster's view.</summary>
    public bool Passed => Delivery.Lost == 0 && Delivery.Duplicated == 0 && Delivery.OutOfOrder == 0 && Churn.All(c => c.Lost == 0)
        && Convergence.Converged == Convergence.AgentsChecked && Convergence.IsolationViolations == 0;
}

/// <summary>
/// The run's latency histograms (<see cref="Measurement.HistogramCodec"/>): over every phase, per phase
/// (in the order of <see cref="LoadResult.Phases"/>), per churn kind, and the joins' time to a first map.
/// </summary>
public sealed record HistogramSet(string All, IReadOnlyList<string> Phases, IReadOnlyDictionary<string, string> Churn, string TimeToFirstMap);

/// <summary>
/// One kind of membership or policy churn (<see cref="Measurement.ChurnKind"/>): how many events, how
/// many recipient-events were due and settled, how many were lost, and the latency to each recipient.
/// </summary>
public sealed record ChurnKindResult(string Kind, long Events, long Expected, long Settled, long Lost, LatencySummary Latency);

/// <summary>The join storm: every node registering at once (at most so many in flight), until each holds its whole tailnet.</summary>
public sealed record JoinResult(int Nodes, double Seconds, double JoinsPerSecond, double MeshedAfterSeconds, LatencySummary TimeToFirstMap);

/// <summary>Full netmaps received in a phase: how many, their bytes (protobuf, before sealing), and the agents that got two or more.</summary>
public sealed record FullMapCount(long Maps, long Bytes, int AgentsWithSeveral)
{
    public static FullMapCount operator +(FullMapCount a, FullMapCount b) => new(a.Maps + b.Maps, a.Bytes + b.Bytes, a.AgentsWithSeveral + b.AgentsWithSeveral);
}

/// <summary>One churn phase: its changes and how fast they reached every peer.</summary>
public sealed record PhaseResult(
    string Name, double Seconds, int Changes, double ChangesPerSecond, long Deliveries, double DeliveriesPerSecond, LatencySummary Latency,
    double? ConvergeAfterChaosSeconds)
{
    /// <summary>CPU the sampled coordinator processes used during the phase, in seconds (null without a sampled process).</summary>
    public double? CoordinatorCpuSeconds { get; init; }

    /// <summary>
    /// The tester's own GC pauses during the phase, added up, and the longest (null in results from
    /// before they were measured). A pause holds back every agent of the process, so it shows in the
    /// latencies; with several generators, the largest of theirs.
    /// </summary>
    public double? GeneratorGcPauseSeconds { get; init; }

    public double? GeneratorLongestGcPauseMs { get; init; }

    /// <summary>The tester's collections during the phase (null in results from before they were counted; with several generators, those of the one that paused longest).</summary>
    public GcCollections? GeneratorCollections { get; init; }

    /// <summary>
    /// Full netmaps the fleet got during the phase, their protobuf bytes, and how many agents got more
    /// than one (null in results from before they were counted). A failover costs each agent whose
    /// tailnet or device entity moved one full map; more than one is work the cluster and the agent repeat.
    /// </summary>
    public FullMapCount? FullMaps { get; init; }

    /// <summary>Coordinator CPU per delivery in microseconds: what one change costs per recipient.</summary>
    public double? CoordinatorMicrosPerDelivery => CoordinatorCpuSeconds is { } cpu && Deliveries > 0 ? cpu * 1e6 / Deliveries : null;
}

/// <summary>Garbage collections, by the oldest generation each collected.</summary>
public sealed record GcCollections(int Gen0, int Gen1, int Gen2);

/// <summary>Milliseconds.</summary>
public sealed record LatencySummary(long Count, double P50, double P90, double P99, double P999, double Max)
{
    public static readonly LatencySummary Empty = new(0, 0, 0, 0, 0, 0);
}

public sealed record DeliveryResult(
    long Expected, long Delivered, long Superseded, long Lost, long Duplicated, long OutOfOrder,
    long Deltas, double BytesPerDelta, long FullMaps, double BytesPerFullMap, long LargestFullMap);

/// <summary>The end check: each simulated store against the devices the cluster lists for its tailnet.</summary>
public sealed record ConvergenceResult(int AgentsChecked, int Converged, int IsolationViolations, IReadOnlyList<string> Differences);

/// <summary>
/// Memory per node: the generator's managed heap per simulated node, and each sampled coordinator's
/// RSS (and CPU) with the fleet connected, less what it used before the fleet joined.
/// </summary>
public sealed record MemoryResult(double GeneratorBytesPerNode, double GeneratorRssBytesPerNode, IReadOnlyList<CoordinatorSample> Coordinators)
{
    /// <summary>The sampled coordinators' RSS growth per connected device, in KB (null without a sampled process).</summary>
    public double? CoordinatorKbPerDevice { get; init; }

    /// <summary>The same once the churn has drained (delta logs full, idle entities stopped), over the processes that lived through the run.</summary>
    public double? CoordinatorKbPerDeviceAtEnd { get; init; }
}

public sealed record CoordinatorSample(int ProcessId, long RssBytesBefore, long RssBytesAfter, double CpuSeconds)
{
    /// <summary>RSS once the churn has drained (0: the process was gone, or not sampled).</summary>
    public long RssBytesAtEnd { get; init; }
}

/// <summary>One second of the run: what was delivered in it and how fast.</summary>
public sealed record TimelinePoint(double Second, string Phase, long Deliveries, double P50, double P99, int Joined);
