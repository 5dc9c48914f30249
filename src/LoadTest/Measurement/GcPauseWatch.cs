using Weft.LoadTest.Reporting;

namespace Weft.LoadTest.Measurement;

/// <summary>
/// The tester's own garbage-collection pauses over a phase. A pause stops every simulated agent of the
/// process at once, so the changes it catches arrive late as if the cluster were slow: the report gives
/// these pauses next to the latencies so that the two can be told apart. The total counts every pause.
/// The longest is sampled from the phase's pacing loop (every few milliseconds), which sees the last
/// collection's pauses: of two collections between samples (rare; the loop also waits out a chaos
/// command), only the later is seen.
/// </summary>
public sealed class GcPauseWatch
{
    private readonly TimeSpan _totalAtStart = GC.GetTotalPauseDuration();
    private readonly int[] _countsAtStart = [GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2)];
    private long _lastSeen = GC.GetGCMemoryInfo(GCKind.Any).Index;

    /// <summary>The longest pause of one collection seen since the start.</summary>
    public TimeSpan Longest { get; private set; }

    /// <summary>Every pause since the start, added up.</summary>
    public TimeSpan Total => GC.GetTotalPauseDuration() - _totalAtStart;

    /// <summary>
    /// The collections since the start, by the oldest generation each collected: frequent young ones
    /// that pause long point at what survives them; gen2 ones at the size of the whole heap.
    /// </summary>
    public GcCollections Collections
    {
        get
        {
            // CollectionCount(n) counts every collection of generation n or older.
            var (all, gen1Up, gen2) = (GC.CollectionCount(0) - _countsAtStart[0], GC.CollectionCount(1) - _countsAtStart[1], GC.CollectionCount(2) - _countsAtStart[2]);
            return new GcCollections(all - gen1Up, gen1Up - gen2, gen2);
        }
    }

    public void Sample()
    {
        var last = GC.GetGCMemoryInfo(GCKind.Any);
        if (last.Index == _lastSeen) return;
        _lastSeen = last.Index;
        var pause = Weft.Cluster.Telemetry.LongGcPauses.Paused(last);
        if (pause > Longest) Longest = pause;
    }
}
