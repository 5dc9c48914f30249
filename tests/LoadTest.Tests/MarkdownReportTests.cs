using System.Text.Json;
using System.Xml.Linq;
using Weft.LoadTest.Reporting;

namespace Weft.LoadTest.Tests;

/// <summary>The report generator on a fixed result: the tables carry its numbers, the plots are valid SVG with one point per measured second and one bar per percentile and phase.</summary>
public sealed class MarkdownReportTests
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    private static LoadResult Fixed(long lost = 0, long churnLost = 0) => new()
    {
        Churn = [new ChurnKindResult("Joined", 30, 360, 360, 0, new LatencySummary(360, 66.5, 245, 366.1, 366.1, 366.1)),
                 new ChurnKindResult("Left", 9, 108, 108 - churnLost, churnLost, new LatencySummary(108 - churnLost, 38.7, 69.4, 70.3, 70.4, 70.4))],
        PolicyGroups = 2,
        Scenario = "3x50,1x500",
        StartedAt = new DateTimeOffset(2026, 12, 2, 3, 4, 0, TimeSpan.Zero),
        Nodes = 650,
        Tailnets = 4,
        Coordinators = 3,
        Join = new JoinResult(650, 6.5, 100, 7.3, new LatencySummary(650, 2500, 3500, 3700, 3770, 3772.4)),
        Phases =
        [
            new PhaseResult("steady", 20, 4000, 200, 300_000, 15_000, new LatencySummary(300_000, 28.7, 81.7, 226.9, 359.2, 2244.6), null)
                { CoordinatorCpuSeconds = 4.5, GeneratorGcPauseSeconds = 0.6424, GeneratorLongestGcPauseMs = 203.6, GeneratorCollections = new GcCollections(41, 7, 1) },
            new PhaseResult("kill <node 2>", 30, 6000, 200, 420_000, 14_000, new LatencySummary(420_000, 31, 95, 1676.3, 9083.8, 12234.4), 11.5)
                { FullMaps = new FullMapCount(4_175, 91_750_400, 312) },
        ],
        Latency = new LatencySummary(720_000, 29.5, 88, 900.2, 8000, 12234.4),
        Delivery = new DeliveryResult(730_000, 720_000, 10_000 - lost, lost, 0, 0, 300_000, 201.4, 667, 18_977, 55_061),
        Convergence = new ConvergenceResult(650, lost == 0 ? 650 : 649, 0, lost == 0 ? [] : ["agent 7: holds endpoints [198.18.0.0:1030] for dv_x, the cluster [198.18.0.0:1031]"]),
        Memory = new MemoryResult(139_468.8, 246_374.4, [new CoordinatorSample(4242, 193_986_560, 316_669_952, 7.1) { RssBytesAtEnd = 300_000_000 }, new CoordinatorSample(4343, 190_000_000, 310_000_000, 6.0)])
        {
            CoordinatorKbPerDevice = 188.7,
            CoordinatorKbPerDeviceAtEnd = 101.2,
        },
        Timeline =
        [
            new TimelinePoint(1, "join", 0, 0, 0, 10),
            new TimelinePoint(2, "steady", 15_000, 28, 200, 650),
            new TimelinePoint(3, "steady", 15_100, 29, 180, 650),
            new TimelinePoint(4, "kill <node 2>", 9_000, 500, 9000, 650),
            new TimelinePoint(5, "kill <node 2>", 14_000, 31, 120, 650),
        ],
    };

    [Fact]
    public void The_markdown_carries_the_results_numbers_and_links_both_plots()
    {
        var markdown = MarkdownReport.Markdown(Fixed());
        Assert.Contains("# Weft load test: 3x50,1x500", markdown);
        Assert.Contains("650 simulated nodes in 4 tailnets of 2 policy groups each · 3 coordinator(s) · **passed**", markdown);
        Assert.Contains("| Joined | 30 | 360 | 360 | 0 | 66.5 | 245 | 366.1 | 366.1 |", markdown);
        Assert.Contains("| Left | 9 | 108 | 108 | 0 | 38.7 | 69.4 | 70.3 | 70.4 |", markdown);
        Assert.Contains("650 nodes joined in 6.5 s (**100 joins/s**); every node held its whole tailnet after 7.3 s.", markdown);
        Assert.Contains("| steady | 20 | 200 | 15000 | 28.7 | 81.7 | 226.9 | 359.2 | 2244.6 | — | 15.0 | — | 642 ms in all, longest 204 ms; 41 gen0, 7 gen1, 1 gen2 collections |", markdown);
        Assert.Contains("| kill <node 2> | 30 | 200 | 14000 | 31 | 95 | 1676.3 | 9083.8 | 12234.4 | 11.5 s | — | 4,175 (87.5 MB); 312 agents got more than one | — |", markdown);
        Assert.Contains("| 730,000 | 720,000 | 10,000 | 0 | 0 | 0 |", markdown);
        Assert.Contains("650 of 650 stores equal the cluster's view; 0 peer(s) seen across tailnets.", markdown);
        Assert.Contains("Coordinators: 188.7 KB of RSS per connected device once the fleet joined, 101.2 KB once the churn drained.", markdown);
        Assert.Contains("- process 4242: RSS 185 MB before the fleet, 302 MB with it, 286 MB at the end; 7.1 s of CPU while it joined", markdown);
        Assert.Contains("- process 4343: RSS 181 MB before the fleet, 296 MB with it, gone at the end;", markdown);
        Assert.Contains("Generator: 136.2 KB of managed heap", markdown);
        Assert.Contains("](latency-over-time.svg)", markdown);
        Assert.Contains("](percentiles-per-phase.svg)", markdown);
    }

    [Fact]
    public void A_churn_event_that_never_reached_a_peer_fails_the_run()
    {
        Assert.True(Fixed().Passed);
        var failed = Fixed(churnLost: 1);
        Assert.False(failed.Passed);
        Assert.Contains("| Left | 9 | 108 | 107 | 1 |", MarkdownReport.Markdown(failed));
        Assert.Contains("**FAILED**", MarkdownReport.Markdown(failed));
    }

    [Fact]
    public void A_failed_run_says_so_and_lists_its_differences()
    {
        var markdown = MarkdownReport.Markdown(Fixed(lost: 3));
        Assert.Contains("**FAILED**", markdown);
        Assert.Contains("| 730,000 | 720,000 | 9,997 | 3 | 0 | 0 |", markdown);
        Assert.Contains("- agent 7: holds endpoints [198.18.0.0:1030] for dv_x, the cluster [198.18.0.0:1031]", markdown);
    }

    [Fact]
    public void The_latency_plot_has_one_point_per_second_with_deliveries_for_p50_and_p99_and_marks_each_phase()
    {
        var svg = XDocument.Parse(MarkdownReport.LatencyOverTime(Fixed()));
        var lines = svg.Descendants(Svg + "polyline").ToList();
        Assert.Equal(["p50", "p99"], lines.Select(l => (string)l.Attribute("data-series")!));
        Assert.All(lines, l => Assert.Equal(4, ((string)l.Attribute("points")!).Split(' ').Length));
        var labels = svg.Descendants(Svg + "text").Select(t => t.Value).ToList();
        Assert.Contains("join", labels);
        Assert.Contains("steady", labels);
        Assert.Contains("kill <node 2>", labels);
        // Slower is higher: the 9,000 ms point of p99 sits above its 120 ms point.
        var p99 = ((string)lines[1].Attribute("points")!).Split(' ').Select(p => double.Parse(p.Split(',')[1], System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(p99[2] < p99[3]);
    }

    [Fact]
    public void The_percentile_plot_has_four_bars_per_phase_and_names_each_phase()
    {
        var svg = XDocument.Parse(MarkdownReport.PercentilesPerPhase(Fixed()));
        var bars = svg.Descendants(Svg + "rect").Where(r => (string?)r.Attribute("class") == "bar").ToList();
        Assert.Equal(8, bars.Count);
        Assert.Contains("kill <node 2> p99.9: 9083.8 ms", bars.Select(b => b.Element(Svg + "title")!.Value));
        Assert.Contains("steady", svg.Descendants(Svg + "text").Select(t => t.Value));
    }

    [Fact]
    public void Write_puts_the_report_the_plots_and_a_json_result_that_reads_back()
    {
        var directory = Path.Combine(Path.GetTempPath(), "weft-report-test-" + Guid.NewGuid().ToString("N"));
        try
        {
            MarkdownReport.Write(Fixed(), directory);
            foreach (var file in new[] { MarkdownReport.ReportFile, MarkdownReport.ResultFile, MarkdownReport.LatencyOverTimeFile, MarkdownReport.PercentilesPerPhaseFile })
                Assert.True(File.Exists(Path.Combine(directory, file)), file);
            var back = JsonSerializer.Deserialize<LoadResult>(File.ReadAllText(Path.Combine(directory, MarkdownReport.ResultFile)), MarkdownReport.Json)!;
            Assert.Equal(650, back.Nodes);
            Assert.Equal(11.5, back.Phases[1].ConvergeAfterChaosSeconds);
            Assert.Equal(188.7, back.Memory.CoordinatorKbPerDevice);
            Assert.True(back.Passed);
        }
        finally
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
    }
}
