using System.CommandLine;
using System.Globalization;
using Weft.Fuzz.Engine;
using Weft.Fuzz.Harnesses;

// weft-fuzz: runs every parser's harness for a fixed number of inputs and prints, last, the line
// "fuzz: harnesses=<n> execs=<n> crashes=<n> hangs=<n>". Exit code 1 if anything crashed, 3 on a hang.

var execs = new Option<long>("--execs-per-harness") { Description = "Inputs to run per harness (regression inputs and seeds count too)", DefaultValueFactory = _ => 100_000 };
var only = new Option<string[]>("--harness") { Description = "Run only these harnesses (default: all); see --list", AllowMultipleArgumentsPerToken = true };
var seed = new Option<int?>("--seed") { Description = "Random seed (default: a new one, printed so that a run can be repeated)" };
var output = new Option<DirectoryInfo>("--out") { Description = "Where crashing and hanging inputs are saved", DefaultValueFactory = _ => new DirectoryInfo("fuzz-findings") };
var hangSeconds = new Option<int>("--hang-seconds") { Description = "An input that runs longer than this is a hang", DefaultValueFactory = _ => 10 };
var regressions = new Option<DirectoryInfo>("--regressions") { Description = "Saved inputs replayed first, one folder per harness", DefaultValueFactory = _ => new DirectoryInfo(Path.Combine(AppContext.BaseDirectory, "regressions")) };
var list = new Option<bool>("--list") { Description = "List the harnesses and exit" };

var root = new RootCommand("Fuzzes every Weft parser in-process: structured mutations, a corpus guided by edge coverage and outcomes, shrunk crash files")
{
    execs, only, seed, output, hangSeconds, regressions, list,
};
var instrument = new Command("instrument", "Add SharpFuzz's branch instrumentation to the Weft assemblies next to weft-fuzz (run it before fuzzing, in its own process)");
instrument.SetAction(_ => Instrumentation.Run());
root.Add(instrument);
root.SetAction(parse =>
{
    // First: instrumented Weft code writes to the coverage map from its first branch on.
    using var coverage = new Coverage();
    var harnesses = AllHarnesses();
    if (parse.GetValue(list))
    {
        foreach (var harness in harnesses) Console.WriteLine(harness.Name);
        return 0;
    }
    var wanted = parse.GetValue(only) ?? [];
    var unknown = wanted.Except(harnesses.Select(h => h.Name)).ToList();
    if (unknown.Count > 0)
    {
        Console.Error.WriteLine($"unknown harness(es): {string.Join(", ", unknown)}; known: {string.Join(", ", harnesses.Select(h => h.Name))}");
        return 2;
    }
    if (wanted.Length > 0) harnesses = harnesses.Where(h => wanted.Contains(h.Name)).ToList();

    var runSeed = parse.GetValue(seed) ?? Random.Shared.Next();
    var outputDirectory = parse.GetValue(output)!.FullName;
    var options = new FuzzOptions(parse.GetValue(execs), runSeed, outputDirectory, parse.GetValue(regressions)!.FullName);
    var reports = new List<HarnessReport>();
    string Summary(int hangs) =>
        $"fuzz: harnesses={reports.Count + hangs} execs={reports.Sum(r => r.Execs)} crashes={reports.Sum(r => r.Crashes)} hangs={hangs}";
    using var watchdog = new Watchdog(TimeSpan.FromSeconds(parse.GetValue(hangSeconds)), outputDirectory, () => Summary(1));

    Console.WriteLine($"seed={runSeed} execs_per_harness={options.ExecsPerHarness} findings={outputDirectory}");
    foreach (var harness in harnesses)
    {
        var report = new FuzzRun(harness, options, watchdog, coverage).Execute();
        reports.Add(report);
        var rate = report.Execs / Math.Max(report.Elapsed.TotalSeconds, 1e-3);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"harness={report.Harness} execs={report.Execs} crashes={report.Crashes} regressions={report.Regressions} corpus={report.Corpus} edges={report.Edges} outcomes={report.Outcomes} slowest_ms={report.SlowestMs:F1} execs_per_s={rate:F0}"));
        foreach (var file in report.CrashFiles)
            Console.WriteLine($"  CRASH saved: {file} (stack trace in {file}.txt); once fixed, copy it to tests/Fuzz/regressions/{report.Harness}/");
        (harness as IDisposable)?.Dispose();
    }
    if (reports.All(r => r.Edges == 0))
        Console.WriteLine("coverage: none (the Weft assemblies are not instrumented: run weft-fuzz instrument first); only outcomes guided this run");
    Console.WriteLine(Summary(0));
    return reports.Sum(r => r.Crashes) > 0 ? 1 : 0;
});
return root.Parse(args).Invoke();

static List<Harness> AllHarnesses() =>
[
    new ControlHandshakeHarness(),
    new ControlFrameHarness(),
    new AgentNetMapHarness(),
    new WireGuardHarness(),
    new WgQuickConfigHarness(),
    new UapiHarness(),
    new DnsHarness(),
    new HuJsonHarness(),
    new PolicyHarness(),
    new ApiBodyHarness(),
    new TokenHarness(),
    new StunHarness(),
    new RelayHarness(),
];
