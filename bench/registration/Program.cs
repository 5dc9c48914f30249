// The registration benchmark: what one join costs the tailnet entity's own logic, in tailnets of
// growing size: TailnetState's decision and its events applied, then the compiled policy following
// the join and the fan-out collecting what every peer is to hear of it (no actors, no journal, no
// encoding). The tailnet entity handles one message at a time, so these costs, times the joins, are
// time a join storm spends in single file inside one tailnet.
using System.Diagnostics;
using Weft.Cluster.Policy;
using Weft.Cluster.Tailnets;

var sizes = new[] { 50, 500, 5000, 20000 };
var at = new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero);
const string TailnetId = "tn_bench";

TailnetState Decided(TailnetState state, ITailnetCommand command)
{
    var decision = state.Process(command);
    if (decision.Rejection is { } rejection) throw new InvalidOperationException($"{rejection.Code}: {rejection.Message}");
    return decision.Events.Aggregate(state, (s, e) => s.Apply(e));
}

RegisterDevice Join(int i) => new(TailnetId, $"dev_{i:x8}", $"{i:x64}", $"{i + (1 << 30):x64}", "", $"host-{i}", "linux", "key", "hash", at);

var state = TailnetState.Unborn(TailnetId).Apply(new TailnetCreated(TailnetRules.DefaultSettings("bench"), at));
state = Decided(state, new CreateAuthKey(TailnetId, "key", "hash", null, Reusable: true, Ephemeral: false, [], at.AddDays(1), "", at));

// Grow the tailnet one join at a time (the storm), and at each size time the next join, made again and again.
var storm = Stopwatch.StartNew();
var perJoinUs = new Dictionary<int, double>();
var fanOutUs = new Dictionary<int, double>();
var joined = 0;
foreach (var size in sizes)
{
    for (; joined < size; joined++) state = Decided(state, Join(joined));
    var elapsedBefore = storm.Elapsed;
    storm.Stop();
    var next = Join(size);
    for (var i = 0; i < 50; i++) Decided(state, next); // warm up
    var best = double.MaxValue;
    var reps = Math.Max(20, 100_000 / size);
    for (var round = 0; round < 5; round++)
    {
        var watch = Stopwatch.StartNew();
        for (var i = 0; i < reps; i++) Decided(state, next);
        best = Math.Min(best, watch.Elapsed.TotalMicroseconds / reps);
    }
    perJoinUs[size] = best;

    // The policy and the fan-out: every peer gets the new device (the default policy: everyone sees everyone).
    var engine = PolicyEngine.Compile(state.Policy, state.PolicyDevices());
    var registered = state.Process(next).Events.OfType<DeviceRegistered>().Single();
    var after = state.Apply(registered);
    var fanOutBest = double.MaxValue;
    for (var round = 0; round < 6; round++)
    {
        var spent = TimeSpan.Zero;
        var fanOutReps = Math.Max(10, 20_000 / size);
        for (var i = 0; i < fanOutReps; i++)
        {
            var watch = Stopwatch.StartNew();
            var change = engine.Follow(registered, after);
            var into = new DeltaAccumulator();
            PeerFanOut.Collect(registered, state, after, change, engine, _ => true, into);
            spent += watch.Elapsed;
            if (into.RecipientCount != size) throw new InvalidOperationException($"{into.RecipientCount} peers heard of the join, not {size}");
            engine.Remove(registered.Device.DeviceId);
        }
        if (round > 0) fanOutBest = Math.Min(fanOutBest, spent.TotalMicroseconds / fanOutReps); // the first round warms up
    }
    fanOutUs[size] = fanOutBest;
    Console.WriteLine($"{size,6} devices: {best,9:F1} µs per join, {fanOutBest,9:F1} µs for its policy and fan-out; storm so far {elapsedBefore.TotalSeconds:F2} s");
    storm.Start();
}
storm.Stop();

var smallest = sizes[0];
var largest = sizes[^1];
Console.WriteLine(
    $"registration: us_at_{smallest}={perJoinUs[smallest]:F1} us_at_5000={perJoinUs[5000]:F1} us_at_{largest}={perJoinUs[largest]:F1} " +
    $"storm_s_{largest}={storm.Elapsed.TotalSeconds:F2} fanout_us_at_5000={fanOutUs[5000]:F1} fanout_us_at_{largest}={fanOutUs[largest]:F1} " +
    $"at_{largest}_vs_at_{smallest}={perJoinUs[largest] / perJoinUs[smallest]:F1} fanout_at_{largest}_vs_at_{smallest}={fanOutUs[largest] / fanOutUs[smallest]:F1}");
