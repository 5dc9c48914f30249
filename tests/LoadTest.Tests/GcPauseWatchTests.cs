using Weft.LoadTest.Measurement;

namespace Weft.LoadTest.Tests;

/// <summary>The tester's own collections over a phase, counted by the oldest generation each collected.</summary>
public sealed class GcPauseWatchTests
{
    [Fact]
    public void Each_collection_is_counted_once_under_the_oldest_generation_it_collected()
    {
        // The runtime's counters, read around the watch: it may also collect on its own at any moment.
        var (all, gen1Up, gen2) = (GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2));
        var watch = new GcPauseWatch();
        GC.Collect(0, GCCollectionMode.Forced, blocking: true);
        GC.Collect(1, GCCollectionMode.Forced, blocking: true);
        GC.Collect(2, GCCollectionMode.Forced, blocking: true);
        var counted = watch.Collections;
        var (allAfter, gen1UpAfter, gen2After) = (GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2));

        // Three collections were forced, one of them of the whole heap (the GC may raise a young one to an older generation).
        Assert.InRange(counted.Gen0 + counted.Gen1 + counted.Gen2, 3, allAfter - all);
        Assert.InRange(counted.Gen1 + counted.Gen2, 1, gen1UpAfter - gen1Up);
        Assert.InRange(counted.Gen2, 1, gen2After - gen2);
        // The runtime counts a gen2 collection under gen0 and gen1 as well: counted there too, the sum would pass the runtime's own total.
        Assert.True(counted.Gen0 >= 0 && counted.Gen1 >= 0, $"counted {counted}");
    }
}
