using HdrHistogram;
using Weft.LoadTest.Fleet;
using Weft.LoadTest.Measurement;
using Weft.LoadTest.Reporting;
using Weft.LoadTest.Scenarios;

namespace Weft.LoadTest.Tests;

/// <summary>
/// Several generator processes (<c>--shard i/n</c>): how a scenario is split, how the shards wait for
/// each other, and how their results merge. A real two-shard run is in <see cref="LoadRunTests"/>.
/// </summary>
public sealed class ShardTests
{
    private static readonly Scenario Mixed = new Scenario
    {
        Name = "mix",
        Tailnets = [new TailnetGroup(5, 10), new TailnetGroup(1, 50)],
        JoinsInFlight = 100,
        Phases =
        [
            new ChurnPhase { Name = "steady", Seconds = 10, EndpointChangesPerSecond = 100, KeyRotationsPerSecond = 10, PolicyEditsPerSecond = 6 },
            new ChurnPhase { Name = "kill", Seconds = 20, EndpointChangesPerSecond = 100, ChaosCommand = "deploy/local-cluster kill 2", ChaosAtSecond = 5 },
        ],
    }.Validated();

    [Fact]
    public void Each_shard_takes_every_nth_tailnet_and_its_share_of_the_rates_and_together_they_make_the_whole()
    {
        var first = Mixed.ForShard(Shard.Parse("1/2"));
        var second = Mixed.ForShard(Shard.Parse("2/2"));

        // Positions 0, 2, 4 (three of 10) and 1, 3, 5 (two of 10, then the 50).
        Assert.Equal([new TailnetGroup(3, 10)], first.Tailnets);
        Assert.Equal([new TailnetGroup(2, 10), new TailnetGroup(1, 50)], second.Tailnets);
        Assert.Equal(Mixed.TotalNodes, first.TotalNodes + second.TotalNodes);
        Assert.Equal("mix (shard 2/2)", second.Name);

        // Changes and rotations follow the nodes (30 and 70 of 100); policy edits follow the tailnets (3 each of 6).
        Assert.Equal(30, first.Phases[0].EndpointChangesPerSecond, 6);
        Assert.Equal(70, second.Phases[0].EndpointChangesPerSecond, 6);
        Assert.Equal(Mixed.Phases[0].KeyRotationsPerSecond, first.Phases[0].KeyRotationsPerSecond + second.Phases[0].KeyRotationsPerSecond, 6);
        Assert.Equal(3, first.Phases[0].PolicyEditsPerSecond, 6);
        Assert.Equal(30, first.JoinsInFlight);
        Assert.Equal(70, second.JoinsInFlight);

        // The chaos command runs once, in shard 1; shard 2 marks its moment to measure its own recovery.
        Assert.Equal("deploy/local-cluster kill 2", first.Phases[1].ChaosCommand);
        Assert.False(first.Phases[1].ChaosElsewhere);
        Assert.Null(second.Phases[1].ChaosCommand);
        Assert.True(second.Phases[1].ChaosElsewhere);
        Assert.True(second.Phases[1].HasChaos);
        Assert.False(second.Phases[0].HasChaos);

        Assert.Same(Mixed, Mixed.ForShard(Shard.Whole));
    }

    [Theory]
    [InlineData("2", "is not a shard")]
    [InlineData("a/2", "is not a shard")]
    [InlineData("0/2", "shard number 0 is outside 1-2")]
    [InlineData("3/2", "shard number 3 is outside 1-2")]
    [InlineData("1/0", "shard count 0 is outside 1-1000")]
    public void A_bad_shard_is_refused_with_what_is_wrong(string text, string expected) =>
        Assert.Contains(expected, Assert.Throws<ScenarioException>(() => Shard.Parse(text)).Message);

    [Fact]
    public void A_shard_without_a_tailnet_is_refused() =>
        Assert.Contains("shard 8/8 has no tailnets: the scenario has only 6", Assert.Throws<ScenarioException>(() => Mixed.ForShard(Shard.Parse("8/8"))).Message);

    [Fact]
    public async Task Shards_wait_at_a_point_until_every_one_has_arrived_a_failed_one_lets_the_others_go_and_an_old_folder_is_refused()
    {
        var folder = Directory.CreateTempSubdirectory("weft-shards-").FullName;
        try
        {
            var one = new ShardBarrier(folder, Shard.Parse("1/2"), TextWriter.Null);
            var two = new ShardBarrier(folder, Shard.Parse("2/2"), TextWriter.Null);
            var waiting = one.ArriveAsync("joined");
            await Task.Delay(300);
            Assert.False(waiting.IsCompleted, "shard 1 went on before shard 2 arrived");
            await two.ArriveAsync("joined");
            await waiting.WaitAsync(TimeSpan.FromSeconds(10));

            var again = new ShardBarrier(folder, Shard.Parse("2/2"), TextWriter.Null);
            var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => again.ArriveAsync("tailnets"));
            Assert.Contains("from an earlier run of shard 2/2", refused.Message);

            var alone = new ShardBarrier(Path.Combine(folder, "alone"), Shard.Parse("1/2"), TextWriter.Null) { Timeout = TimeSpan.FromMilliseconds(300) };
            Assert.Contains("for shard(s) 2 of 2", (await Assert.ThrowsAsync<TimeoutException>(() => alone.ArriveAsync("tailnets"))).Message);

            // A shard that fails lets the others go at once, with its reason, instead of keeping them waiting.
            var waiter = new ShardBarrier(Path.Combine(folder, "failing"), Shard.Parse("1/2"), TextWriter.Null);
            var waiting2 = waiter.ArriveAsync("joined");
            new ShardBarrier(Path.Combine(folder, "failing"), Shard.Parse("2/2"), TextWriter.Null).Abandon("TimeoutException: joins stalled");
            var failed = await Assert.ThrowsAsync<InvalidOperationException>(() => waiting2.WaitAsync(TimeSpan.FromSeconds(10)));
            Assert.Contains("shard 2/2 failed, so this run cannot go on: TimeoutException: joins stalled", failed.Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void A_histogram_survives_its_trip_through_text_and_garbage_is_refused()
    {
        var histogram = new LongHistogram(1, 3_600_000_000, 3);
        for (var micros = 1_000; micros <= 200_000; micros += 1_000) histogram.RecordValue(micros);
        var back = HistogramCodec.Decode(HistogramCodec.Encode(histogram));
        Assert.Equal(histogram.TotalCount, back.TotalCount);
        Assert.Equal(histogram.GetValueAtPercentile(99), back.GetValueAtPercentile(99));
        Assert.Equal(histogram.GetMaxValue(), back.GetMaxValue());
        // A large one, as a real run makes (700,000 latencies from 1 µs to 24 s): HdrHistogram.NET's own
        // compressed decoding fails on it, so the codec must not rely on it.
        var large = new LongHistogram(1, 3_600_000_000, 3);
        var random = new Random(1);
        for (var i = 0; i < 700_000; i++) large.RecordValue((long)Math.Exp(random.NextDouble() * 17));
        var largeBack = HistogramCodec.Decode(HistogramCodec.Encode(large));
        Assert.Equal(large.TotalCount, largeBack.TotalCount);
        Assert.Equal(large.GetValueAtPercentile(99.9), largeBack.GetValueAtPercentile(99.9));
        Assert.Equal(large.GetMaxValue(), largeBack.GetMaxValue());

        Assert.Throws<FormatException>(() => HistogramCodec.Decode("not base64!"));
        Assert.Throws<FormatException>(() => HistogramCodec.Decode(Convert.ToBase64String(new byte[64])));
    }

    /// <summary>A shard's result whose propagation latencies are exactly <paramref name="millis"/>.</summary>
    private static LoadResult ShardResult(string shard, int nodes, double joinSeconds, IEnumerable<int> millis, long lost = 0, double? converge = null, double gcPauseSeconds = 0, double longestGcPauseMs = 0, GcCollections? collections = null, FullMapCount? fullMaps = null)
    {
        var histogram = new LongHistogram(1, 3_600_000_000, 3);
        foreach (var ms in millis) histogram.RecordValue(ms * 1000L);
        var encoded = HistogramCodec.Encode(histogram);
        var summary = LoadRun.Summarize(histogram);
        var churn = new LongHistogram(1, 3_600_000_000, 3);
        churn.RecordValue(50_000);
        return new LoadResult
        {
            Scenario = $"mix (shard {shard})",
            Shard = shard,
            StartedAt = DateTimeOffset.UnixEpoch,
            Nodes = nodes,
            Tailnets = nodes / 10,
            Coordinators = 3,
            Join = new JoinResult(nodes, joinSeconds, nodes / joinSeconds, joinSeconds + 1, summary),
            Phases = [new PhaseResult("steady", 10, 100, 10, histogram.TotalCount, histogram.TotalCount / 10.0, summary, converge)
                { CoordinatorCpuSeconds = 4, GeneratorGcPauseSeconds = gcPauseSeconds, GeneratorLongestGcPauseMs = longestGcPauseMs, GeneratorCollections = collections, FullMaps = fullMaps }],
            Latency = summary,
            Delivery = new DeliveryResult(histogram.TotalCount + lost, histogram.TotalCount, 0, lost, 0, 0, 1000, 200, 10, 5000, 9000),
            Convergence = new ConvergenceResult(nodes, nodes, 0, []),
            // Each shard saw the coordinators grow by 100 MB with the whole fleet in, over its own nodes.
            Memory = new MemoryResult(100_000, 200_000, [new CoordinatorSample(42, 1, 2, 3)]) { CoordinatorKbPerDevice = 100.0 * 1024 / nodes },
            Timeline = [new TimelinePoint(1, "steady", histogram.TotalCount, summary.P50, summary.P99, nodes)],
            Churn = [new ChurnKindResult("Joined", 1, 10, 10, 0, LoadRun.Summarize(churn))],
            Histograms = new HistogramSet(encoded, [encoded], new Dictionary<string, string> { ["Joined"] = HistogramCodec.Encode(churn) }, encoded),
        };
    }

    [Fact]
    public void Merged_shards_add_their_counts_take_percentiles_over_all_latencies_and_count_the_coordinators_once()
    {
        var fast = ShardResult("1/2", 300, joinSeconds: 3, Enumerable.Range(1, 100), gcPauseSeconds: 0.9, longestGcPauseMs: 40, collections: new GcCollections(50, 3, 0),
            fullMaps: new FullMapCount(300, 3_000_000, 12));
        var slow = ShardResult("2/2", 700, joinSeconds: 7, Enumerable.Range(101, 100), converge: 4.5, gcPauseSeconds: 0.3, longestGcPauseMs: 120, collections: new GcCollections(20, 6, 1),
            fullMaps: new FullMapCount(700, 7_000_000, 30));

        var merged = ResultMerge.Merge([fast, slow]);

        Assert.Equal("mix (2 shards merged)", merged.Scenario);
        Assert.Equal(2, merged.ShardsMerged);
        Assert.Null(merged.Shard);
        Assert.Equal(1000, merged.Nodes);
        Assert.Equal(200, merged.Latency.Count);
        // 1..200 ms together: the median is about 100 ms and the 99th about 198 ms; neither shard alone says so.
        Assert.InRange(merged.Latency.P50, 99, 101);
        Assert.InRange(merged.Latency.P99, 197, 199);
        Assert.InRange(merged.Phases[0].Latency.P50, 99, 101);
        Assert.Equal(200, merged.Phases[0].Deliveries);
        Assert.Equal(4.5, merged.Phases[0].ConvergeAfterChaosSeconds);
        // Both shards sampled the same coordinators: their CPU is not added, their growth is spread over all 1,000 nodes.
        Assert.Equal(4, merged.Phases[0].CoordinatorCpuSeconds);
        // Each generator paused on its own: the merged phase carries the worst of each figure, not their sum.
        Assert.Equal(0.9, merged.Phases[0].GeneratorGcPauseSeconds);
        Assert.Equal(120, merged.Phases[0].GeneratorLongestGcPauseMs);
        // The collections are those of the generator that paused longest, not a mix of both.
        Assert.Equal(new GcCollections(50, 3, 0), merged.Phases[0].GeneratorCollections);
        // Each generator counted its own agents' full maps: they add up.
        Assert.Equal(new FullMapCount(1000, 10_000_000, 42), merged.Phases[0].FullMaps);
        Assert.Equal(102.4, merged.Memory.CoordinatorKbPerDevice!.Value, 6);
        // The storm ended when the slower shard's did.
        Assert.Equal(7, merged.Join.Seconds);
        Assert.Equal(1000 / 7.0, merged.Join.JoinsPerSecond, 6);
        Assert.Equal(2, merged.Churn.Single().Events);
        Assert.Equal(2, merged.Churn.Single().Latency.Count);
        Assert.Equal(200, merged.Timeline.Single().Deliveries);
        Assert.True(merged.Passed);
        Assert.Contains("Merged from 2 generator processes (shards)", MarkdownReport.Markdown(merged));
        Assert.Contains("Shard 1/2 of a run in several generator processes", MarkdownReport.Markdown(fast));

        // What one shard lost fails the merged run, and the merged result merges again.
        var lossy = ResultMerge.Merge([fast, ShardResult("2/2", 700, 7, Enumerable.Range(101, 100), lost: 3)]);
        Assert.Equal(3, lossy.Delivery.Lost);
        Assert.False(lossy.Passed);
        Assert.Equal(3, ResultMerge.Merge([merged, ShardResult("3/3", 10, 1, [5])]).ShardsMerged);
    }

    [Fact]
    public void Results_that_cannot_be_merged_are_refused_by_name()
    {
        var folder = Directory.CreateTempSubdirectory("weft-merge-").FullName;
        try
        {
            var noHistograms = ShardResult("1/2", 10, 1, [5]) with { Histograms = null };
            Assert.Contains("carries no histograms", Assert.Throws<InvalidDataException>(() => ResultMerge.Merge([noHistograms])).Message);
            var twoPhases = ShardResult("2/2", 10, 1, [5]);
            twoPhases = twoPhases with { Phases = [.. twoPhases.Phases, .. twoPhases.Phases] };
            Assert.Contains("different phases", Assert.Throws<InvalidDataException>(() => ResultMerge.Merge([ShardResult("1/2", 10, 1, [5]), twoPhases])).Message);

            var garbage = Path.Combine(folder, "result.json");
            File.WriteAllText(garbage, "{\"scenario\": 5");
            Assert.Contains("not a weft-loadtest result", Assert.Throws<InvalidDataException>(() => ResultMerge.Read(garbage)).Message);
            Assert.Contains("no such file", Assert.Throws<InvalidDataException>(() => ResultMerge.Read(Path.Combine(folder, "missing.json"))).Message);

            // What the report writes, merge reads back.
            MarkdownReport.Write(ShardResult("1/2", 10, 1, [5]), folder);
            Assert.Equal(10, ResultMerge.Read(Path.Combine(folder, MarkdownReport.ResultFile)).Nodes);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
