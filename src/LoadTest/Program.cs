// weft-loadtest: simulated nodes on the real control protocol against a real Weft cluster.
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Weft.LoadTest;
using Weft.LoadTest.Coordinators;
using Weft.LoadTest.Fleet;
using Weft.LoadTest.Reporting;
using Weft.LoadTest.Scenarios;

var scenarioFile = new Option<FileInfo?>("--scenario") { Description = "A scenario file (JSON, see docs in the README); flags below are ignored for what it sets" };
var tailnets = new Option<string>("--tailnets") { Description = "Tailnets x nodes, mixed with commas: 1000x50,1x5000", DefaultValueFactory = _ => "10x20" };
var changes = new Option<double>("--changes-per-second") { Description = "Endpoint changes per second during the churn", DefaultValueFactory = _ => 100 };
var seconds = new Option<double>("--seconds") { Description = "How long the churn lasts", DefaultValueFactory = _ => 30 };
var rotations = new Option<double>("--rotations-per-second") { Description = "Node-key rotations per second during the churn", DefaultValueFactory = _ => 0 };
var joinsPerSecond = new Option<double>("--joins-per-second") { Description = "New nodes joining per second during the churn", DefaultValueFactory = _ => 0 };
var leavesPerSecond = new Option<double>("--leaves-per-second") { Description = "Nodes that joined during the churn deleted per second (the admin API's device delete)", DefaultValueFactory = _ => 0 };
var ephemeralPerSecond = new Option<double>("--ephemeral-per-second") { Description = "Ephemeral nodes per second: each joins, disconnects once its peers hold it, and must be removed from them", DefaultValueFactory = _ => 0 };
var policyEditsPerSecond = new Option<double>("--policy-edits-per-second") { Description = "Policy edits per second, each to a random tailnet", DefaultValueFactory = _ => 0 };
var policyGroups = new Option<int>("--policy-groups") { Description = "Tagged groups per tailnet that see only themselves: the visibility V is about nodes/groups - 1", DefaultValueFactory = _ => 1 };
var thinAbove = new Option<int>("--thin-above") { Description = "Agents holding more peers than this keep thin peer records (id, node key, endpoints); 0: all thin", DefaultValueFactory = _ => 500 };
var fullSample = new Option<int>("--full-sample-every") { Description = "Among the thin agents, every Nth keeps full records", DefaultValueFactory = _ => 20 };
var reconnectStorm = new Option<bool>("--reconnect-storm") { Description = "Add a phase in which every node drops its stream and dials again within two seconds" };
var chaos = new Option<string?>("--chaos") { Description = "A shell command run in a chaos phase after the churn, e.g. 'deploy/local-cluster kill 2'" };
var chaosAt = new Option<double>("--chaos-at") { Description = "Seconds into the chaos phase at which the command runs", DefaultValueFactory = _ => 5 };
var joinsInFlight = new Option<int>("--joins-in-flight") { Description = "Registrations outstanding at once during the join storm", DefaultValueFactory = _ => 256 };
var coordinators = new Option<string?>("--coordinators") { Description = "Control URLs of an existing cluster, comma-separated; without it the tester starts one coordinator itself" };
var api = new Option<string?>("--api") { Description = "Admin API URLs of that cluster, comma-separated" };
var apiKey = new Option<string?>("--api-key") { Description = "An operator API key for that cluster (or WEFT_API_KEY)" };
var samplePids = new Option<string?>("--sample-pids") { Description = "Coordinator process ids on this machine to sample for CPU and RSS, comma-separated" };
var output = new Option<DirectoryInfo?>("--out") { Description = "Where report.md, result.json and the plots go (default ./loadtest-<time>)" };
var noProgress = new Option<bool>("--no-progress") { Description = "Plain progress lines instead of the live display" };
var shardOption = new Option<string?>("--shard") { Description = "Run only this generator's part, <number>/<count> (e.g. 2/3): every count-th tailnet and its share of the rates, against --coordinators; merge the shards' results with 'weft-loadtest merge'" };
var syncDir = new Option<DirectoryInfo?>("--sync-dir") { Description = "With --shard: a fresh folder every shard of the run sees, where they wait for each other before the join storm and each phase" };
var keepTailnets = new Option<bool>("--keep-tailnets") { Description = "Leave the run's tailnets (load-*) in an existing cluster instead of deleting them at the end" };

var root = new RootCommand("Simulated Weft nodes on the real control protocol against a real cluster: join storms, churn, chaos, propagation percentiles.")
{
    scenarioFile, tailnets, changes, seconds, rotations, joinsPerSecond, leavesPerSecond, ephemeralPerSecond, policyEditsPerSecond, policyGroups, thinAbove, fullSample, reconnectStorm, chaos, chaosAt, joinsInFlight, coordinators, api, apiKey, samplePids, output, noProgress, keepTailnets, shardOption, syncDir,
};
root.Add(MergeCommand());
root.SetAction(async (parse, cancel) =>
{
    Scenario scenario;
    try
    {
        scenario = parse.GetValue(scenarioFile) is { } file
            ? Scenario.Parse(await File.ReadAllTextAsync(file.FullName, cancel))
            : FromFlags(parse);
    }
    catch (Exception e) when (e is ScenarioException or IOException)
    {
        Console.Error.WriteLine($"error: {e.Message}");
        return 2;
    }

    var shard = Shard.Whole;
    try
    {
        if (parse.GetValue(shardOption) is { } shardText) shard = Shard.Parse(shardText);
        scenario = scenario.ForShard(shard);
    }
    catch (ScenarioException e)
    {
        Console.Error.WriteLine($"error: {e.Message}");
        return 2;
    }
    if (!shard.IsWhole && (parse.GetValue(coordinators) is null || parse.GetValue(syncDir) is null))
    {
        Console.Error.WriteLine("error: --shard runs one part of a run against a shared cluster: it needs --coordinators (with --api and --api-key) and --sync-dir");
        return 2;
    }

    var display = new ProgressDisplay(live: !parse.GetValue(noProgress) && !Console.IsOutputRedirected && !Console.IsErrorRedirected);
    await using var cluster = await Target(parse, display.Log);
    if (cluster is null) return 2;
    var run = new LoadRun(scenario, cluster, display.Log)
    {
        Progress = display.Update,
        Barrier = shard.IsWhole ? null : new ShardBarrier(parse.GetValue(syncDir)!.FullName, shard, display.Log),
    };
    var result = await display.RunAsync(() => run.RunAsync(cancel));

    var directory = parse.GetValue(output)?.FullName ?? Path.GetFullPath($"loadtest-{DateTime.UtcNow:yyyyMMdd-HHmmss}");
    MarkdownReport.Write(result, directory);
    Console.WriteLine($"report: {Path.Combine(directory, MarkdownReport.ReportFile)}");
    // A cluster the tester started goes away whole; an existing one gets its tailnets back.
    if (parse.GetValue(coordinators) is not null && !parse.GetValue(keepTailnets)) await run.DeleteTailnetsAsync();
    Console.WriteLine(SummaryLine(result));
    return result.Passed ? 0 : 1;
});
return await root.Parse(args).InvokeAsync();

// weft-loadtest merge --out DIR a/result.json b/result.json: one report from the shards of a run.
Command MergeCommand()
{
    var results = new Argument<FileInfo[]>("results") { Description = "Each shard's result.json", Arity = ArgumentArity.OneOrMore };
    var mergedOut = new Option<DirectoryInfo?>("--out") { Description = "Where the merged report.md, result.json and plots go (default ./loadtest-merged-<time>)" };
    var merge = new Command("merge", "Merge the results of a run's shards (--shard i/n) into one report: counts add up, percentiles come from the histograms added together") { results, mergedOut };
    merge.SetAction(parse =>
    {
        LoadResult merged;
        try
        {
            merged = ResultMerge.Merge([.. parse.GetValue(results)!.Select(f => ResultMerge.Read(f.FullName))]);
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or IOException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        var directory = parse.GetValue(mergedOut)?.FullName ?? Path.GetFullPath($"loadtest-merged-{DateTime.UtcNow:yyyyMMdd-HHmmss}");
        MarkdownReport.Write(merged, directory);
        Console.WriteLine($"report: {Path.Combine(directory, MarkdownReport.ReportFile)}");
        Console.WriteLine(SummaryLine(merged));
        return merged.Passed ? 0 : 1;
    });
    return merge;
}

Scenario FromFlags(ParseResult parse)
{
    var phases = new List<ChurnPhase>
    {
        new()
        {
            Name = "steady", Seconds = parse.GetValue(seconds), EndpointChangesPerSecond = parse.GetValue(changes), KeyRotationsPerSecond = parse.GetValue(rotations),
            JoinsPerSecond = parse.GetValue(joinsPerSecond), LeavesPerSecond = parse.GetValue(leavesPerSecond),
            EphemeralPerSecond = parse.GetValue(ephemeralPerSecond), PolicyEditsPerSecond = parse.GetValue(policyEditsPerSecond),
        },
    };
    if (parse.GetValue(reconnectStorm))
        phases.Add(new ChurnPhase { Name = "reconnect-storm", Seconds = Math.Max(10, parse.GetValue(seconds) / 2), EndpointChangesPerSecond = parse.GetValue(changes), ReconnectStorm = true });
    if (parse.GetValue(chaos) is { } command)
        phases.Add(new ChurnPhase
        {
            Name = "chaos", Seconds = Math.Max(parse.GetValue(chaosAt) + 20, parse.GetValue(seconds)), EndpointChangesPerSecond = parse.GetValue(changes),
            ChaosCommand = command, ChaosAtSecond = parse.GetValue(chaosAt),
        });
    return new Scenario
    {
        Name = parse.GetValue(tailnets)!,
        Tailnets = Scenario.ParseMix(parse.GetValue(tailnets)!),
        JoinsInFlight = parse.GetValue(joinsInFlight),
        PolicyGroups = parse.GetValue(policyGroups),
        ThinAbovePeers = parse.GetValue(thinAbove),
        FullSampleEvery = parse.GetValue(fullSample),
        Phases = phases,
    }.Validated();
}

async Task<TargetCluster?> Target(ParseResult parse, TextWriter log)
{
    if (parse.GetValue(coordinators) is not { } control) return await TargetCluster.StartLocalAsync(log);
    var key = parse.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("WEFT_API_KEY");
    if (parse.GetValue(api) is not { } apiUrls || key is null)
    {
        Console.Error.WriteLine("error: --coordinators needs --api and --api-key (or WEFT_API_KEY)");
        return null;
    }
    return TargetCluster.Existing(Urls(control), Urls(apiUrls),
        key, (parse.GetValue(samplePids) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToList());
}

static IReadOnlyList<Uri> Urls(string list) => list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(u => new Uri(u.EndsWith('/') ? u : u + "/")).ToList();

static string SummaryLine(LoadResult r)
{
    var latency = r.Latency;
    string F(double? v, string format = "0.#") => v is { } x ? x.ToString(format, CultureInfo.InvariantCulture) : "none";
    var converge = r.Phases.FirstOrDefault(p => p.ConvergeAfterChaosSeconds is not null)?.ConvergeAfterChaosSeconds;
    return $"loadtest: nodes={r.Nodes}{(r.ShardsMerged > 1 ? $" shards={r.ShardsMerged}" : r.Shard is { } part ? $" shard={part}" : "")} p50_ms={F(latency.P50)} p99_ms={F(latency.P99)} p999_ms={F(latency.P999)} lost={r.Delivery.Lost} duplicated={r.Delivery.Duplicated} " +
        $"out_of_order={r.Delivery.OutOfOrder} converged={r.Convergence.Converged}/{r.Convergence.AgentsChecked} isolation_violations={r.Convergence.IsolationViolations} " +
        $"converge_after_chaos_s={F(converge)} joins_per_s={F(r.Join.JoinsPerSecond, "0")} coord_kb_per_device={F(r.Memory.CoordinatorKbPerDevice, "0.0")} " +
        $"coord_kb_per_device_end={F(r.Memory.CoordinatorKbPerDeviceAtEnd, "0.0")} " +
        $"agent_kb_per_node={F(r.Memory.GeneratorBytesPerNode / 1024, "0.0")}" +
        string.Concat(r.Churn.Select(c => $" {c.Kind.ToLowerInvariant()}={c.Events} {c.Kind.ToLowerInvariant()}_p99_ms={F(c.Latency.P99)} {c.Kind.ToLowerInvariant()}_lost={c.Lost}"));
}
