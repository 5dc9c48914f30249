using System.Text;
using Spectre.Console;

namespace Weft.LoadTest.Reporting;

/// <summary>
/// What a person watches during a run. On a terminal: a live Spectre.Console table (phase, joined and
/// meshed nodes, changes, deliveries, the last second's percentiles, and the latest log lines).
/// Redirected (CI, a pipe): a plain progress line every few seconds on standard error.
/// </summary>
public sealed class ProgressDisplay
{
    private const int KeptLines = 8;
    private readonly bool _live;
    private readonly Queue<string> _lines = new();
    private RunProgress? _last;
    private DateTime _lastPlain = DateTime.MinValue;

    public ProgressDisplay(bool live)
    {
        _live = live;
        Log = new LineWriter(Line);
    }

    /// <summary>The run's log: shown under the table when live, on standard error otherwise.</summary>
    public TextWriter Log { get; }

    public void Update(RunProgress progress)
    {
        lock (_lines) _last = progress;
        if (_live || DateTime.UtcNow - _lastPlain < TimeSpan.FromSeconds(5)) return;
        _lastPlain = DateTime.UtcNow;
        Console.Error.WriteLine(Describe(progress));
    }

    public static string Describe(RunProgress p) =>
        $"[{p.Elapsed,6:0}s] {p.Phase}: joined {p.Joined}/{p.Nodes}, meshed {p.Meshed}, changes {p.Changes}, delivered {p.Delivered}, unsettled {p.Unsettled}" +
        (p.LastSecond is { Deliveries: > 0 } s ? $", last second p50 {s.P50:0.#} ms p99 {s.P99:0.#} ms" : "");

    /// <summary>Runs <paramref name="work"/> with the display on.</summary>
    public async Task<T> RunAsync<T>(Func<Task<T>> work)
    {
        if (!_live) return await work();
        T result = default!;
        await AnsiConsole.Live(Render()).AutoClear(false).StartAsync(async context =>
        {
            var task = work();
            while (!task.IsCompleted)
            {
                context.UpdateTarget(Render());
                await Task.WhenAny(task, Task.Delay(500));
            }
            context.UpdateTarget(Render());
            result = await task;
        });
        return result;
    }

    private Table Render()
    {
        RunProgress? p;
        string[] lines;
        lock (_lines)
        {
            p = _last;
            lines = [.. _lines];
        }
        var table = new Table().Border(TableBorder.Rounded).Title("weft-loadtest").AddColumn("").AddColumn("");
        table.HideHeaders();
        if (p is not null)
        {
            table.AddRow("phase", Markup.Escape($"{p.Phase} ({p.Elapsed:0} s)"));
            table.AddRow("nodes", $"{p.Joined:N0} joined, {p.Meshed:N0} meshed of {p.Nodes:N0}");
            table.AddRow("changes", $"{p.Changes:N0} made, {p.Delivered:N0} deliveries, {p.Unsettled:N0} unsettled");
            if (p.LastSecond is { } s) table.AddRow("last second", $"{s.Deliveries:N0} deliveries, p50 {s.P50:0.#} ms, p99 {s.P99:0.#} ms");
        }
        foreach (var line in lines) table.AddRow("", Markup.Escape(line));
        return table;
    }

    private void Line(string line)
    {
        if (!_live)
        {
            Console.Error.WriteLine(line);
            return;
        }
        lock (_lines)
        {
            _lines.Enqueue(line);
            while (_lines.Count > KeptLines) _lines.Dequeue();
        }
    }

    /// <summary>A TextWriter that hands over whole lines.</summary>
    private sealed class LineWriter(Action<string> onLine) : TextWriter
    {
        private readonly StringBuilder _pending = new();

        public override Encoding Encoding => Encoding.UTF8;

        public override void Write(char value)
        {
            lock (_pending)
            {
                if (value == '\n')
                {
                    onLine(_pending.ToString().TrimEnd('\r'));
                    _pending.Clear();
                }
                else _pending.Append(value);
            }
        }
    }
}
