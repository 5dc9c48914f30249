using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Weft.Cluster.Telemetry;

/// <summary>
/// Warns about garbage collections that stop this node long enough to worry the cluster. A node that
/// sends no heartbeat for about 3.5 s is marked unreachable by the others (akka.hocon's failure
/// detector), and in a cluster left with two nodes that decides which one downs itself. The runtime's
/// own metrics add pauses up (<c>dotnet.gc.pause.time</c>); this says which collection it was, how
/// long it stopped the node, and how big the heap was, at the moment it happens. Each long pause is
/// also counted in <c>weft.gc.long_pauses</c>, by kind.
/// <para>
/// The runtime keeps the latest collection of each kind (ephemeral, full blocking, background), so
/// they are read every <see cref="Interval"/>: of two collections of one kind within an interval,
/// only the later is seen. A pause worth a warning is itself longer than the interval.
/// </para>
/// </summary>
public sealed class LongGcPauses(ILogger<LongGcPauses> log, TimeSpan? threshold = null) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(100);

    /// <summary>Pauses from this long on are logged by default (a third of what makes the cluster take a node for dead).</summary>
    public static readonly TimeSpan DefaultThreshold = TimeSpan.FromSeconds(1);

    private static readonly GCKind[] Kinds = [GCKind.Ephemeral, GCKind.FullBlocking, GCKind.Background];
    private readonly Meter _meter = new(CoordinatorMetrics.MeterName);
    private readonly long[] _seen = new long[Kinds.Length];
    private readonly TimeSpan _threshold = threshold ?? DefaultThreshold;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var longPauses = _meter.CreateCounter<long>("weft.gc.long_pauses", "{collection}",
            $"Garbage collections that stopped this node for {_threshold.TotalSeconds:0.###} s or more, by kind");
        for (var i = 0; i < Kinds.Length; i++) _seen[i] = GC.GetGCMemoryInfo(Kinds[i]).Index;
        using var timer = new PeriodicTimer(Interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
                for (var i = 0; i < Kinds.Length; i++)
                    if (Check(i) is { } kind)
                        longPauses.Add(1, new KeyValuePair<string, object?>("kind", kind));
        }
        catch (OperationCanceledException)
        {
            // The node is stopping.
        }
    }

    /// <summary>The kind's name when its latest collection is new and stopped the node for the threshold or more (it is logged); null otherwise.</summary>
    private string? Check(int kind)
    {
        var info = GC.GetGCMemoryInfo(Kinds[kind]);
        if (info.Index == _seen[kind]) return null;
        _seen[kind] = info.Index;
        var pause = Paused(info);
        if (pause < _threshold) return null;
        var name = KindName(Kinds[kind]);
        log.LogWarning("A garbage collection ({Kind}, generation {Generation}) stopped this node for {PauseMs:0} ms (heap {HeapMb:0} MB after it, " +
                       "{PromotedMb:0} MB promoted, {Flavor} GC); the other nodes mark a node unreachable after about 3.5 s without a heartbeat",
            name, info.Generation, pause.TotalMilliseconds, info.HeapSizeBytes / 1048576.0, info.PromotedBytes / 1048576.0, System.Runtime.GCSettings.IsServerGC ? "server" : "workstation");
        return name;
    }

    /// <summary>How long <paramref name="info"/>'s collection stopped the process: every pause it made, added up.</summary>
    public static TimeSpan Paused(GCMemoryInfo info)
    {
        var pause = TimeSpan.Zero;
        foreach (var part in info.PauseDurations) pause += part;
        return pause;
    }

    private static string KindName(GCKind kind) => kind switch
    {
        GCKind.Ephemeral => "ephemeral",
        GCKind.FullBlocking => "full blocking",
        GCKind.Background => "background",
        _ => kind.ToString(),
    };

    public override void Dispose()
    {
        _meter.Dispose();
        base.Dispose();
    }
}
