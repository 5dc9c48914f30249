using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Weft.Cluster.Telemetry;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Hosting;

/// <summary>
/// The coordinator's warning about collections that stop it long enough to worry the cluster, on the
/// real runtime: a forced collection is seen, with its kind and generation, and counted; at the
/// shipped threshold the same short collections say nothing.
/// </summary>
[Collection(ProcessTelemetry.Name)]
public sealed class LongGcPausesTests
{
    [Fact]
    public async Task A_collection_over_the_threshold_is_logged_with_its_kind_and_generation_and_counted()
    {
        var counted = new ConcurrentBag<string>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Name == "weft.gc.long_pauses") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags) if (tag.Key == "kind") counted.Add((string)tag.Value!);
        });
        listener.Start();
        var everything = new CollectingLogger();
        var shipped = new CollectingLogger();
        using var everyPause = new LongGcPauses(everything, threshold: TimeSpan.Zero);
        using var longOnly = new LongGcPauses(shipped);
        await everyPause.StartAsync(CancellationToken.None);
        await longOnly.StartAsync(CancellationToken.None);
        try
        {
            await Task.Delay(LongGcPauses.Interval * 3); // both have taken the runtime's latest collections as seen

            // Tests beside this one allocate too; a collection of theirs between two looks can hide the forced
            // one, so each look forces another.
            await Eventually.Until(() => Collected(2) && everything.Lines.Any(l => l.Contains("A garbage collection (full blocking, generation 2) stopped this node for", StringComparison.Ordinal)),
                "the forced full collection is reported", TimeSpan.FromSeconds(10));
            Assert.Contains("full blocking", counted);

            await Eventually.Until(() => Collected(0) && everything.Lines.Any(l => l.Contains("A garbage collection (ephemeral, generation 0) stopped this node for", StringComparison.Ordinal)),
                "the forced young collection is reported", TimeSpan.FromSeconds(10));
            Assert.Contains("ephemeral", counted);
            Assert.All(everything.Lines, l => Assert.Contains("3.5 s without a heartbeat", l));

            // At the shipped threshold only collections of a second or more are reported (on a loaded
            // machine one of these may really take that long; the short ones say nothing).
            Assert.All(shipped.Lines, l => Assert.True(PausedMs(l) >= 1000, l));
            Assert.Contains(everything.Lines, l => PausedMs(l) < 1000);
        }
        finally
        {
            await everyPause.StopAsync(CancellationToken.None);
            await longOnly.StopAsync(CancellationToken.None);
        }
    }

    private static double PausedMs(string line)
    {
        var match = System.Text.RegularExpressions.Regex.Match(line, @"stopped this node for (\d+) ms");
        Assert.True(match.Success, line);
        return double.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    private static bool Collected(int generation)
    {
        GC.Collect(generation, GCCollectionMode.Forced, blocking: true, compacting: generation == 2);
        Thread.Sleep(LongGcPauses.Interval * 2);
        return true;
    }

    private sealed class CollectingLogger : ILogger<LongGcPauses>
    {
        private readonly ConcurrentQueue<string> _lines = new();

        public IReadOnlyList<string> Lines => [.. _lines];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            _lines.Enqueue($"{logLevel}: {formatter(state, exception)}");
    }
}
