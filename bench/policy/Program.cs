// The policy benchmark: full compile versus the incremental paths, on a generated tailnet shaped
// like a real company's (teams as groups, services as tags, rules between them, subnet routers and
// exit nodes).
using System.Collections.Immutable;
using System.Net;
using System.Diagnostics;
using System.Text;
using Weft.Cluster.Policy;

const int Devices = 5000, Groups = 100, Tags = 100, Users = 1500, TaggedDevices = 1500, Routers = 200, ExitNodes = 20;
var random = new Random(20261125);

// ---- the tailnet
var users = Enumerable.Range(0, Users).Select(i => $"user{i}@example.com").ToArray();
var tags = Enumerable.Range(0, Tags).Select(i => $"tag:svc{i}").ToArray();
var groupMembers = Enumerable.Range(0, Groups).Select(g => Enumerable.Range(0, 30).Select(_ => users[random.Next(Users)]).Distinct().ToArray()).ToArray();
var devices = new List<PolicyDevice>();
for (var i = 0; i < Devices; i++)
{
    var v4 = $"100.64.{(i + 1) / 256}.{(i + 1) % 256}";
    var v6 = $"fd7a:115c:a1e0::{i + 1:x}";
    devices.Add(i < TaggedDevices
        ? new PolicyDevice($"dev{i}", null, [tags[i % Tags]], v4, v6)
        : new PolicyDevice($"dev{i}", users[random.Next(Users)], [], v4, v6));
}
// 200 subnet routers (one /24 each in 198.18.0.0/16; the last one's route waits for approval) and 20 exit nodes, among the tagged devices.
IPNetwork RouteOf(int router) => IPNetwork.Parse($"198.18.{router}.0/24");
for (var r = 0; r < Routers; r++)
    devices[r] = devices[r] with { Routes = r == Routers - 1 ? [] : [RouteOf(r)] };
for (var e = 0; e < ExitNodes; e++)
    devices[Routers + e] = devices[Routers + e] with { ExitNode = true };

// ---- the policy: ~300 rules between teams and services
var text = new StringBuilder("{\n  \"groups\": {\n");
for (var g = 0; g < Groups; g++) text.Append($"    \"group:team{g}\": [{string.Join(", ", groupMembers[g].Select(u => $"\"{u}\""))}],\n");
text.Append("  },\n  \"tagOwners\": {\n");
foreach (var tag in tags) text.Append($"    \"{tag}\": [\"group:team0\"],\n");
text.Append("  },\n  \"hosts\": { \"lab\": \"100.64.10.0/24\", \"printer\": \"100.64.12.7\" },\n  \"acls\": [\n");
var rules = new List<string>();
for (var g = 0; g < Groups; g++)
{
    // Each team reaches two services on their ports.
    rules.Add($"{{ \"action\": \"accept\", \"src\": [\"group:team{g}\"], \"dst\": [\"{tags[g % Tags]}:443,8443\"] }}");
    rules.Add($"{{ \"action\": \"accept\", \"src\": [\"group:team{g}\"], \"dst\": [\"{tags[(g * 7 + 3) % Tags]}:22\"] }}");
}
for (var t = 0; t < Tags; t++) rules.Add($"{{ \"action\": \"accept\", \"src\": [\"{tags[t]}\"], \"dst\": [\"{tags[(t + 1) % Tags]}:5432\"] }}"); // service chains
rules.Add("{ \"action\": \"accept\", \"src\": [\"autogroup:member\"], \"dst\": [\"autogroup:self:*\"] }");
rules.Add("{ \"action\": \"accept\", \"src\": [\"autogroup:member\"], \"dst\": [\"printer:631\"] }");
rules.Add("{ \"action\": \"accept\", \"src\": [\"lab\"], \"proto\": \"udp\", \"dst\": [\"tag:svc1:53\"] }");
// Routes: each team reaches two branch subnets; one team the whole branch range; every member the internet through exit nodes.
for (var g = 0; g < Groups; g++)
    rules.Add($"{{ \"action\": \"accept\", \"src\": [\"group:team{g}\"], \"dst\": [\"198.18.{g * 2 % Routers}.0/24:*\", \"198.18.{(g * 2 + 1) % Routers}.0/24:22,443\"] }}");
rules.Add("{ \"action\": \"accept\", \"src\": [\"group:team0\"], \"dst\": [\"198.18.0.0/16:*\"] }");
rules.Add("{ \"action\": \"accept\", \"src\": [\"autogroup:member\"], \"dst\": [\"autogroup:internet:*\"] }");
foreach (var rule in rules) text.Append("    ").Append(rule).Append(",\n");
text.Append("  ],\n}\n");
var policyText = text.ToString();
var policy = Parse(policyText);
Console.WriteLine($"tailnet: {Devices} devices ({TaggedDevices} tagged), {Users} users, {Groups} groups, {Tags} tags, {Routers} subnet routes, {ExitNodes} exit nodes, {policy.Rules.Length} rules, policy {policyText.Length / 1024} KiB");

// ---- full compile: the engine plus every device's peers and filter (what a non-incremental server redoes on every change)
(PolicyEngine Engine, long Pairs) FullCompile()
{
    var engine = PolicyEngine.Compile(policy, devices);
    long pairs = 0;
    foreach (var device in devices) pairs += engine.VisiblePeers(device.DeviceId).Count();
    return (engine, pairs);
}
FullCompile(); // warm-up
var fullRuns = new List<double>();
(PolicyEngine Engine, long Pairs) compiled = default;
for (var i = 0; i < 5; i++)
{
    var watch = Stopwatch.StartNew();
    compiled = FullCompile();
    fullRuns.Add(watch.Elapsed.TotalMilliseconds);
}
var fullMs = Median(fullRuns);
Console.WriteLine($"full compile: median {fullMs:0.0} ms of {fullRuns.Count} ({compiled.Pairs} visible pairs)");

// ---- one device gets a new tag (and the devices that must hear about it)
var engine = compiled.Engine!;
var tagRuns = new List<double>();
var touched = new List<int>();
for (var i = 0; i < 40; i++)
{
    var target = devices[TaggedDevices + random.Next(Devices - TaggedDevices)];
    var retagged = target with { User = null, Tags = [tags[random.Next(Tags)]] };
    var watch = Stopwatch.StartNew();
    var change = engine.Upsert(retagged);
    // Its viewers hear the new tags too (their agents re-resolve tag: sources).
    var reached = change.Touched.Concat(engine.VisiblePeers(retagged.DeviceId)).Append(retagged.DeviceId).ToHashSet();
    var elapsed = watch.Elapsed.TotalMilliseconds;
    if (i >= 5) { tagRuns.Add(elapsed); touched.Add(reached.Count); }
    engine.Upsert(target); // back, so every trial starts from the same tailnet
}
var tagMs = Median(tagRuns);
var touchedMedian = (int)Median(touched.Select(t => (double)t).ToList());
Console.WriteLine($"one tag change: median {tagMs:0.000} ms, devices touched median {touchedMedian} (min {touched.Min()}, max {touched.Max()})");

// ---- one rule added (and removed again)
var ruleRuns = new List<double>();
for (var i = 0; i < 40; i++)
{
    var extra = $"    {{ \"action\": \"accept\", \"src\": [\"group:team{random.Next(Groups)}\"], \"dst\": [\"{tags[random.Next(Tags)]}:9{i:000}\"] }},\n";
    var withRule = Parse(policyText.Replace("  ],\n}", extra + "  ],\n}"));
    var watch = Stopwatch.StartNew();
    engine.ChangePolicy(withRule);
    var elapsed = watch.Elapsed.TotalMilliseconds;
    if (i >= 5) ruleRuns.Add(elapsed);
    engine.ChangePolicy(policy);
}
var ruleMs = Median(ruleRuns);
Console.WriteLine($"one rule change: median {ruleMs:0.000} ms");

// ---- one route approved (the last router's, waiting until now), and withdrawn again: the recompile and who hears of it
var waiting = devices[Routers - 1];
var approved = waiting with { Routes = [RouteOf(Routers - 1)] };
var routeRuns = new List<double>();
var routeTouched = new List<int>();
for (var i = 0; i < 40; i++)
{
    var watch = Stopwatch.StartNew();
    var change = engine.Upsert(approved);
    var reached = change.Touched.Concat(engine.VisiblePeers(approved.DeviceId)).Append(approved.DeviceId).ToHashSet();
    var elapsed = watch.Elapsed.TotalMilliseconds;
    if (i >= 5) { routeRuns.Add(elapsed); routeTouched.Add(reached.Count); }
    engine.Upsert(waiting);
}
var routeMs = Median(routeRuns);
Console.WriteLine($"one route approval: median {routeMs:0.000} ms, devices touched median {(int)Median(routeTouched.Select(t => (double)t).ToList())}");
Console.WriteLine($"ratios: full/tag={fullMs / tagMs:0} full/rule={fullMs / ruleMs:0} full/route={fullMs / routeMs:0}");
Console.WriteLine($"policy: full_ms={fullMs:0.0} one_tag_change_ms={tagMs:0.000} one_rule_change_ms={ruleMs:0.000} devices_touched_by_tag_change={touchedMedian} route_approval_ms={routeMs:0.000}");
return 0;

static TailnetPolicy Parse(string text)
{
    var result = PolicyParser.Parse(text);
    if (!result.IsValid) throw new InvalidOperationException(string.Join("\n", result.Issues.Take(5)));
    return result.Policy!;
}

static double Median(List<double> values)
{
    var sorted = values.Order().ToList();
    return sorted[sorted.Count / 2];
}
