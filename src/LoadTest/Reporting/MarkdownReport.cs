using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Weft.LoadTest.Reporting;

/// <summary>
/// Turns a <see cref="LoadResult"/> into what a person reads: a Markdown report with two SVG plots
/// (latency over time, and percentiles per phase) and the JSON result beside them.
/// </summary>
public static class MarkdownReport
{
    public const string LatencyOverTimeFile = "latency-over-time.svg";
    public const string PercentilesPerPhaseFile = "percentiles-per-phase.svg";
    public const string ReportFile = "report.md";
    public const string ResultFile = "result.json";

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;
    private static readonly (string Name, string Colour)[] Series = [("p50", "#1f77b4"), ("p90", "#2ca02c"), ("p99", "#ff7f0e"), ("p99.9", "#d62728")];

    /// <summary>Writes report.md, result.json and both plots into <paramref name="directory"/>.</summary>
    public static void Write(LoadResult result, string directory)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, ResultFile), JsonSerializer.Serialize(result, Json));
        File.WriteAllText(Path.Combine(directory, ReportFile), Markdown(result));
        File.WriteAllText(Path.Combine(directory, LatencyOverTimeFile), LatencyOverTime(result));
        File.WriteAllText(Path.Combine(directory, PercentilesPerPhaseFile), PercentilesPerPhase(result));
    }

    public static string Markdown(LoadResult r)
    {
        var md = new StringBuilder();
        md.AppendLine(Invariant, $"# Weft load test: {r.Scenario}");
        md.AppendLine();
        md.AppendLine(Invariant, $"{r.StartedAt:yyyy-MM-dd HH:mm} UTC · {r.Nodes:N0} simulated nodes{(r.ThinAgents > 0 ? $" ({r.ThinAgents:N0} thin)" : "")} in {r.Tailnets:N0} tailnets{(r.PolicyGroups > 1 ? $" of {r.PolicyGroups} policy groups each" : "")} · {r.Coordinators} coordinator(s) · **{(r.Passed ? "passed" : "FAILED")}**");
        if (r.ShardsMerged > 1)
            md.AppendLine(Invariant, $"\nMerged from {r.ShardsMerged} generator processes (shards), each with whole tailnets: counts are added, percentiles come from their histograms added together, and a second's p50 and p99 in the plot over time are the highest any shard saw in that second.");
        else if (r.Shard is { } shard)
            md.AppendLine(Invariant, $"\nShard {shard} of a run in several generator processes: this is its part only (`weft-loadtest merge` makes the whole).");
        md.AppendLine();
        md.AppendLine("## Join storm");
        md.AppendLine();
        md.AppendLine(Invariant, $"{r.Join.Nodes:N0} nodes joined in {r.Join.Seconds:0.0} s (**{r.Join.JoinsPerSecond:0} joins/s**); every node held its whole tailnet after {r.Join.MeshedAfterSeconds:0.0} s.");
        md.AppendLine(Invariant, $"Time from start to first netmap per node: p50 {r.Join.TimeToFirstMap.P50:0.#} ms, p99 {r.Join.TimeToFirstMap.P99:0.#} ms, max {r.Join.TimeToFirstMap.Max:0.#} ms.");
        md.AppendLine();
        md.AppendLine("## Propagation per phase");
        md.AppendLine();
        md.AppendLine("From an endpoint change to each affected peer's store applying it, in milliseconds. The tester's own GC pauses " +
            "stop all of its agents at once, so a change they catch counts the pause as latency: they are given last.");
        md.AppendLine();
        md.AppendLine("| phase | seconds | changes/s | deliveries/s | p50 | p90 | p99 | p99.9 | max | recovery after chaos | coordinator CPU µs/delivery | full maps | tester GC pauses |");
        md.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var p in r.Phases)
            md.AppendLine(Invariant,
                $"| {p.Name} | {p.Seconds:0} | {p.ChangesPerSecond:0} | {p.DeliveriesPerSecond:0} | {p.Latency.P50:0.#} | {p.Latency.P90:0.#} | {p.Latency.P99:0.#} | {p.Latency.P999:0.#} | {p.Latency.Max:0.#} | " +
                $"{(p.ConvergeAfterChaosSeconds is { } s ? s.ToString("0.0 s", Invariant) : "—")} | {(p.CoordinatorMicrosPerDelivery is { } us ? us.ToString("0.0", Invariant) : "—")} | {FullMapsText(p.FullMaps)} | " +
                $"{(p.GeneratorGcPauseSeconds is { } paused ? $"{paused * 1000:0} ms in all, longest {p.GeneratorLongestGcPauseMs ?? 0:0} ms{CollectionsText(p.GeneratorCollections)}" : "—")} |");
        md.AppendLine();
        md.AppendLine(Invariant, $"![latency over time]({LatencyOverTimeFile})");
        md.AppendLine();
        md.AppendLine(Invariant, $"![percentiles per phase]({PercentilesPerPhaseFile})");
        md.AppendLine();
        var d = r.Delivery;
        md.AppendLine("## Delivery");
        md.AppendLine();
        md.AppendLine("| due | delivered | superseded | lost | duplicated | out of order |");
        md.AppendLine("|---|---|---|---|---|---|");
        md.AppendLine(Invariant, $"| {d.Expected:N0} | {d.Delivered:N0} | {d.Superseded:N0} | {d.Lost:N0} | {d.Duplicated:N0} | {d.OutOfOrder:N0} |");
        md.AppendLine();
        md.AppendLine(Invariant, $"{d.Deltas:N0} deltas of {d.BytesPerDelta:0} bytes on average; {d.FullMaps:N0} full maps of {d.BytesPerFullMap:0} bytes on average, the largest {d.LargestFullMap:N0} bytes (protobuf, before sealing).");
        md.AppendLine();
        if (r.Churn.Count > 0)
        {
            md.AppendLine("## Membership and policy churn");
            md.AppendLine();
            md.AppendLine("From a join (the node starting), a leave (the admin's delete), an ephemeral node's disconnect (so the tailnet's ephemeral timeout is included), or a policy edit, to each measured node that must see it showing it, in milliseconds.");
            md.AppendLine();
            md.AppendLine("| kind | events | due | settled | lost | p50 | p90 | p99 | max |");
            md.AppendLine("|---|---|---|---|---|---|---|---|---|");
            foreach (var c in r.Churn)
                md.AppendLine(Invariant, $"| {c.Kind} | {c.Events:N0} | {c.Expected:N0} | {c.Settled:N0} | {c.Lost:N0} | {c.Latency.P50:0.#} | {c.Latency.P90:0.#} | {c.Latency.P99:0.#} | {c.Latency.Max:0.#} |");
            md.AppendLine();
        }
        md.AppendLine("## Convergence and isolation");
        md.AppendLine();
        md.AppendLine(Invariant, $"{r.Convergence.Converged:N0} of {r.Convergence.AgentsChecked:N0} stores equal the cluster's view; {r.Convergence.IsolationViolations} peer(s) seen across tailnets.");
        foreach (var difference in r.Convergence.Differences) md.AppendLine(Invariant, $"- {difference}");
        md.AppendLine();
        md.AppendLine("## Memory");
        md.AppendLine();
        md.AppendLine(Invariant, $"Generator: {r.Memory.GeneratorBytesPerNode / 1024:0.0} KB of managed heap and {r.Memory.GeneratorRssBytesPerNode / 1024:0.0} KB of RSS per simulated node.");
        if (r.Memory.CoordinatorKbPerDevice is { } kb)
        {
            var atEnd = r.Memory.CoordinatorKbPerDeviceAtEnd is { } end ? string.Create(Invariant, $", {end:0.0} KB once the churn drained") : "";
            md.AppendLine(Invariant, $"Coordinators: {kb:0.0} KB of RSS per connected device once the fleet joined{atEnd}.");
        }
        foreach (var c in r.Memory.Coordinators)
        {
            var atEnd = c.RssBytesAtEnd > 0 ? string.Create(Invariant, $", {c.RssBytesAtEnd / 1048576.0:0} MB at the end") : ", gone at the end";
            md.AppendLine(Invariant, $"- process {c.ProcessId}: RSS {c.RssBytesBefore / 1048576.0:0} MB before the fleet, {c.RssBytesAfter / 1048576.0:0} MB with it{atEnd}; {c.CpuSeconds:0.0} s of CPU while it joined");
        }
        return md.ToString();
    }

    private static string CollectionsText(GcCollections? c) =>
        c is null ? "" : string.Create(Invariant, $"; {c.Gen0} gen0, {c.Gen1} gen1, {c.Gen2} gen2 collections");

    private static string FullMapsText(FullMapCount? f) =>
        f is null ? "—" : string.Create(Invariant, $"{f.Maps:N0} ({f.Bytes / 1048576.0:0.#} MB); {f.AgentsWithSeveral:N0} agents got more than one");

    /// <summary>p50 and p99 of each second's deliveries, with the phases marked.</summary>
    public static string LatencyOverTime(LoadResult r)
    {
        var plot = new Plot("Propagation latency over time (ms, log scale)", r.Timeline.Count == 0 ? 1 : r.Timeline.Max(p => p.Second));
        var phaseStarts = r.Timeline.Where((p, i) => i == 0 || r.Timeline[i - 1].Phase != p.Phase).ToList();
        foreach (var start in phaseStarts) plot.Marker(start.Second, start.Phase);
        plot.Line("p50", Series[0].Colour, r.Timeline.Where(p => p.Deliveries > 0).Select(p => (p.Second, p.P50)));
        plot.Line("p99", Series[2].Colour, r.Timeline.Where(p => p.Deliveries > 0).Select(p => (p.Second, p.P99)));
        return plot.Render("seconds");
    }

    /// <summary>p50, p90, p99 and p99.9 of each phase as grouped bars.</summary>
    public static string PercentilesPerPhase(LoadResult r)
    {
        var plot = new Plot("Propagation percentiles per phase (ms, log scale)", Math.Max(1, r.Phases.Count));
        for (var i = 0; i < r.Phases.Count; i++)
        {
            var l = r.Phases[i].Latency;
            double[] values = [l.P50, l.P90, l.P99, l.P999];
            for (var s = 0; s < Series.Length; s++) plot.Bar(i + 0.15 + s * 0.18, 0.16, values[s], Series[s].Colour, $"{r.Phases[i].Name} {Series[s].Name}: {values[s]:0.#} ms");
            plot.Label(i + 0.5, r.Phases[i].Name);
        }
        foreach (var (name, colour) in Series) plot.Legend(name, colour);
        return plot.Render("phase");
    }

    /// <summary>A small SVG canvas: x linear from 0 to <c>xMax</c>, y logarithmic from 0.1 ms to 100 s.</summary>
    private sealed class Plot(string title, double xMax)
    {
        private const int Width = 800, Height = 360, Left = 60, Right = 20, Top = 40, Bottom = 50;
        private const double YMin = 0.1, YMax = 100_000;
        private readonly StringBuilder _body = new();
        private readonly List<(string Name, string Colour)> _legend = [];

        private static double X(double value, double max) => Left + value / Math.Max(max, 1e-9) * (Width - Left - Right);

        private double X(double value) => X(value, xMax);

        private static double Y(double ms) =>
            Height - Bottom - (Math.Log10(Math.Clamp(ms, YMin, YMax)) - Math.Log10(YMin)) / (Math.Log10(YMax) - Math.Log10(YMin)) * (Height - Top - Bottom);

        private static string F(double v) => v.ToString("0.#", Invariant);

        public void Line(string name, string colour, IEnumerable<(double X, double Y)> points)
        {
            var list = points.ToList();
            _legend.Add((name, colour));
            if (list.Count == 0) return;
            _body.Append(Invariant, $"<polyline class=\"series\" data-series=\"{name}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"");
            _body.AppendJoin(' ', list.Select(p => $"{F(X(p.X))},{F(Y(p.Y))}"));
            _body.AppendLine("\"/>");
        }

        public void Bar(double x, double width, double ms, string colour, string tooltip)
        {
            var top = Y(ms);
            _body.AppendLine(Invariant,
                $"<rect class=\"bar\" x=\"{F(X(x))}\" y=\"{F(top)}\" width=\"{F(X(width) - Left)}\" height=\"{F(Height - Bottom - top)}\" fill=\"{colour}\"><title>{WebUtility.HtmlEncode(tooltip)}</title></rect>");
        }

        public void Marker(double x, string label)
        {
            _body.AppendLine(Invariant, $"<line x1=\"{F(X(x))}\" y1=\"{Top}\" x2=\"{F(X(x))}\" y2=\"{Height - Bottom}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>");
            _body.AppendLine(Invariant, $"<text x=\"{F(X(x) + 3)}\" y=\"{Top + 12}\" font-size=\"11\" fill=\"#555\">{WebUtility.HtmlEncode(label)}</text>");
        }

        public void Label(double x, string text) =>
            _body.AppendLine(Invariant, $"<text x=\"{F(X(x))}\" y=\"{Height - Bottom + 16}\" font-size=\"12\" text-anchor=\"middle\">{WebUtility.HtmlEncode(text)}</text>");

        public void Legend(string name, string colour) => _legend.Add((name, colour));

        public string Render(string xLabel)
        {
            var svg = new StringBuilder();
            svg.AppendLine(Invariant, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" role=\"img\" aria-label=\"{WebUtility.HtmlEncode(title)}\">");
            svg.AppendLine(Invariant, $"<rect width=\"{Width}\" height=\"{Height}\" fill=\"white\"/>");
            svg.AppendLine(Invariant, $"<text x=\"{Width / 2}\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">{WebUtility.HtmlEncode(title)}</text>");
            for (var decade = YMin; decade <= YMax; decade *= 10)
            {
                svg.AppendLine(Invariant, $"<line x1=\"{Left}\" y1=\"{F(Y(decade))}\" x2=\"{Width - Right}\" y2=\"{F(Y(decade))}\" stroke=\"#eee\"/>");
                svg.AppendLine(Invariant, $"<text x=\"{Left - 6}\" y=\"{F(Y(decade) + 4)}\" font-size=\"11\" text-anchor=\"end\">{F(decade)}</text>");
            }
            svg.AppendLine(Invariant, $"<line x1=\"{Left}\" y1=\"{Height - Bottom}\" x2=\"{Width - Right}\" y2=\"{Height - Bottom}\" stroke=\"black\"/>");
            svg.AppendLine(Invariant, $"<line x1=\"{Left}\" y1=\"{Top}\" x2=\"{Left}\" y2=\"{Height - Bottom}\" stroke=\"black\"/>");
            svg.AppendLine(Invariant, $"<text x=\"{(Left + Width - Right) / 2}\" y=\"{Height - 10}\" font-size=\"12\" text-anchor=\"middle\">{WebUtility.HtmlEncode(xLabel)}</text>");
            svg.Append(_body);
            for (var i = 0; i < _legend.Count; i++)
            {
                var x = Width - Right - 80 * (_legend.Count - i);
                svg.AppendLine(Invariant, $"<rect x=\"{x}\" y=\"{Top - 8}\" width=\"10\" height=\"10\" fill=\"{_legend[i].Colour}\"/>");
                svg.AppendLine(Invariant, $"<text x=\"{x + 14}\" y=\"{Top + 1}\" font-size=\"11\">{WebUtility.HtmlEncode(_legend[i].Name)}</text>");
            }
            svg.AppendLine("</svg>");
            return svg.ToString();
        }
    }
}
