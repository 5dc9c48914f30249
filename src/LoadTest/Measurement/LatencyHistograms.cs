using System.Diagnostics;
using HdrHistogram;

namespace Weft.LoadTest.Measurement;

/// <summary>
/// The one range every latency of a run is kept in (microseconds, from 1 µs to an hour, three
/// significant digits), so that the histograms of every ledger, phase and shard can be added together.
/// </summary>
public static class LatencyHistograms
{
    public const long HighestMicros = 3_600_000_000;

    /// <summary>For recording from many threads.</summary>
    public static LongConcurrentHistogram Concurrent() => new(1, HighestMicros, 3);

    /// <summary>For one thread (adding shards' histograms together).</summary>
    public static LongHistogram Single() => new(1, HighestMicros, 3);

    /// <summary>The latency between two <see cref="Stopwatch"/> timestamps, in µs, brought into the range (a histogram refuses values beyond it).</summary>
    public static long Between(long startedAt, long endedAt) => Math.Clamp((long)Stopwatch.GetElapsedTime(startedAt, endedAt).TotalMicroseconds, 1, HighestMicros);
}
