using System.Text.Json;
using HdrHistogram;
using Weft.LoadTest.Measurement;

namespace Weft.LoadTest.Reporting;

/// <summary>
/// One result from the shards of a run (<c>weft-loadtest merge</c>): counts add up, the latency
/// histograms are added together before any percentile is taken, and what every shard measured of the
/// same thing (the coordinators' CPU and memory) is taken once, not added.
/// </summary>
public static class ResultMerge
{
    /// <summary>Reads a shard's result.json; a file that is not one is refused by name.</summary>
    public static LoadResult Read(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new InvalidDataException($"{path}: no such file");
        if (info.Length > 256L * 1024 * 1024) throw new InvalidDataException($"{path}: {info.Length} bytes is too large for a result");
        try
        {
            return JsonSerializer.Deserialize<LoadResult>(File.ReadAllText(path), MarkdownReport.Json) ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a weft-loadtest result ({e.Message})");
        }
    }

    public static LoadResult Merge(IReadOnlyList<LoadResult> shards)
    {
        if (shards.Count == 0) throw new InvalidDataException("nothing to merge");
        if (shards.FirstOrDefault(s => s.Histograms is null) is { } old)
            throw new InvalidDataException($"the result of '{old.Scenario}' carries no histograms (written by an older weft-loadtest): its percentiles cannot be merged");
        var phaseCounts = shards.Select(s => s.Phases.Count).Distinct().ToList();
        if (phaseCounts.Count != 1) throw new InvalidDataException($"the shards ran different phases ({string.Join(" vs ", phaseCounts)} phases)");
        var histograms = shards.Select(s => s.Histograms!).ToList();
        var nodes = shards.Sum(s => s.Nodes);
        var first = shards[0];

        // Each sum is made once, and serves both its summary and the merged result's own histograms.
        var all = Add(histograms.Select(h => h.All));
        var phaseSums = Enumerable.Range(0, first.Phases.Count).Select(i => Add(histograms.Select(h => h.Phases[i]))).ToList();
        var timeToFirstMap = Add(histograms.Select(h => h.TimeToFirstMap));
        var kinds = shards.SelectMany(s => s.Churn.Select(k => k.Kind)).Distinct().ToList();
        var churnSums = kinds.ToDictionary(k => k, k => Add(histograms.Where(h => h.Churn.ContainsKey(k)).Select(h => h.Churn[k])));
        var phases = Enumerable.Range(0, first.Phases.Count).Select(i =>
        {
            var parts = shards.Select(s => s.Phases[i]).ToList();
            var seconds = parts.Max(p => p.Seconds);
            var changes = parts.Sum(p => p.Changes);
            var deliveries = parts.Sum(p => p.Deliveries);
            var converge = parts.Where(p => p.ConvergeAfterChaosSeconds is not null).Select(p => p.ConvergeAfterChaosSeconds).DefaultIfEmpty(null).Max();
            return new PhaseResult(parts[0].Name, seconds, changes, changes / seconds, deliveries, deliveries / seconds,
                Summary(phaseSums[i]), converge)
            {
                // Every shard sampled the same coordinator processes over the same stretch.
                CoordinatorCpuSeconds = parts.Max(p => p.CoordinatorCpuSeconds),
                // Each generator pauses on its own; the worst of them is what its latencies carry.
                GeneratorGcPauseSeconds = parts.Max(p => p.GeneratorGcPauseSeconds),
                GeneratorLongestGcPauseMs = parts.Max(p => p.GeneratorLongestGcPauseMs),
                // The collections behind those pauses: the generator's that paused longest.
                GeneratorCollections = parts.MaxBy(p => p.GeneratorGcPauseSeconds ?? -1)!.GeneratorCollections,
                // Each generator counts its own agents' maps: they add up (unknown if any generator did not count them).
                FullMaps = parts.Any(p => p.FullMaps is null) ? null : parts.Select(p => p.FullMaps!).Aggregate((a, b) => a + b),
            };
        }).ToList();

        var joinSeconds = shards.Max(s => s.Join.Seconds);
        var join = new JoinResult(shards.Sum(s => s.Join.Nodes), joinSeconds, shards.Sum(s => s.Join.Nodes) / Math.Max(joinSeconds, 1e-3),
            shards.Max(s => s.Join.MeshedAfterSeconds), Summary(timeToFirstMap));

        var d = shards.Select(s => s.Delivery).ToList();
        var deltas = d.Sum(x => x.Deltas);
        var fullMaps = d.Sum(x => x.FullMaps);
        var delivery = new DeliveryResult(d.Sum(x => x.Expected), d.Sum(x => x.Delivered), d.Sum(x => x.Superseded), d.Sum(x => x.Lost),
            d.Sum(x => x.Duplicated), d.Sum(x => x.OutOfOrder), deltas, deltas == 0 ? 0 : d.Sum(x => x.BytesPerDelta * x.Deltas) / deltas,
            fullMaps, fullMaps == 0 ? 0 : d.Sum(x => x.BytesPerFullMap * x.FullMaps) / fullMaps, d.Max(x => x.LargestFullMap));

        var c = shards.Select(s => s.Convergence).ToList();
        var convergence = new ConvergenceResult(c.Sum(x => x.AgentsChecked), c.Sum(x => x.Converged), c.Sum(x => x.IsolationViolations),
            [.. shards.SelectMany(s => s.Convergence.Differences.Select(line => $"[shard {s.Shard ?? "?"}] {line}"))]);

        // Each shard sampled the coordinators before any shard joined and after all had: the growth is
        // the whole fleet's, seen by each shard and divided by its own nodes. Taken once, over all nodes.
        double? Whole(Func<MemoryResult, double?> perDevice) =>
            shards.Select(s => perDevice(s.Memory) * s.Nodes / nodes).Max();
        var memory = new MemoryResult(
            shards.Sum(s => s.Memory.GeneratorBytesPerNode * s.Nodes) / nodes, shards.Sum(s => s.Memory.GeneratorRssBytesPerNode * s.Nodes) / nodes,
            first.Memory.Coordinators)
        {
            CoordinatorKbPerDevice = Whole(m => m.CoordinatorKbPerDevice),
            CoordinatorKbPerDeviceAtEnd = Whole(m => m.CoordinatorKbPerDeviceAtEnd),
        };

        // Second by second, on each shard's own clock from its start (the shards start within moments of
        // each other): deliveries add up; a second's percentiles are the highest any shard saw in it.
        var timeline = shards.SelectMany(s => s.Timeline).GroupBy(p => p.Second).OrderBy(g => g.Key)
            .Select(g => new TimelinePoint(g.Key, g.First().Phase, g.Sum(p => p.Deliveries), g.Max(p => p.P50), g.Max(p => p.P99), g.Sum(p => p.Joined))).ToList();

        var churn = kinds.Select(kind =>
        {
            var parts = shards.SelectMany(s => s.Churn.Where(k => k.Kind == kind)).ToList();
            return new ChurnKindResult(kind, parts.Sum(k => k.Events), parts.Sum(k => k.Expected), parts.Sum(k => k.Settled), parts.Sum(k => k.Lost),
                Summary(churnSums[kind]));
        }).ToList();

        return new LoadResult
        {
            Scenario = $"{StripShard(first.Scenario)} ({shards.Count} shards merged)",
            StartedAt = shards.Min(s => s.StartedAt),
            Nodes = nodes,
            Tailnets = shards.Sum(s => s.Tailnets),
            Coordinators = shards.Max(s => s.Coordinators),
            Join = join,
            Phases = phases,
            Latency = Summary(all),
            Delivery = delivery,
            Convergence = convergence,
            Memory = memory,
            Timeline = timeline,
            Churn = churn,
            PolicyGroups = first.PolicyGroups,
            ThinAgents = shards.Sum(s => s.ThinAgents),
            ShardsMerged = shards.Sum(s => s.ShardsMerged),
            Histograms = new HistogramSet(HistogramCodec.Encode(all), [.. phaseSums.Select(HistogramCodec.Encode)],
                churnSums.ToDictionary(kv => kv.Key, kv => HistogramCodec.Encode(kv.Value)), HistogramCodec.Encode(timeToFirstMap)),
        };
    }

    private static HistogramBase Add(IEnumerable<string> encoded)
    {
        var sum = LatencyHistograms.Single();
        foreach (var text in encoded) sum.Add(HistogramCodec.Decode(text));
        return sum;
    }

    private static LatencySummary Summary(HistogramBase histogram) => LoadRun.Summarize(histogram);

    /// <summary>The scenario's own name, without "(shard 2/3)" or "(3 shards merged)".</summary>
    private static string StripShard(string name)
    {
        var at = name.LastIndexOf(" (", StringComparison.Ordinal);
        if (at <= 0 || !name.EndsWith(')')) return name;
        var note = name[(at + 2)..^1];
        return note.StartsWith("shard ", StringComparison.Ordinal) || note.EndsWith(" shards merged", StringComparison.Ordinal) ? name[..at] : name;
    }
}
