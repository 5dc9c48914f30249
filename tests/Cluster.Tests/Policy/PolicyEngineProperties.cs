using System.Collections.Immutable;
using FsCheck.Xunit;
using Weft.Cluster.Policy;

namespace Weft.Cluster.Tests.Policy;

/// <summary>
/// The incremental engine against the definition: after any sequence of policy edits, device
/// joins and leaves, tag changes and route approvals (subnet routes and exit nodes) it holds exactly
/// what a compile from scratch gives, and the changes it reported along the way add up to the
/// difference.
/// </summary>
public class PolicyEngineProperties
{
    private const string Names = """
        "groups": { "group:eng": ["alice@example.com", "bob@example.com"] },
        "tagOwners": { "tag:web": [], "tag:db": [], "tag:ci": [] },
        "hosts": { "low": "100.64.0.0/29", "lan": "198.18.40.0/24" },
        """;

    /// <summary>The same names standing for other things: other members, another host address.</summary>
    private const string OtherNames = """
        "groups": { "group:eng": ["bob@example.com", "carol@example.com"] },
        "tagOwners": { "tag:web": [], "tag:db": [], "tag:ci": [] },
        "hosts": { "low": "100.64.0.8/29", "lan": "198.18.40.0/24" },
        """;

    /// <summary>Rules that name a group, a role and a host on both sides, and a grant's via: the same text under either set of names.</summary>
    private const string NamesOnBothSides = """
        { "acls": [ { "action": "accept", "src": ["tag:ci"], "dst": ["group:eng:22", "low:80", "autogroup:admin:443"] },
                    { "action": "accept", "src": ["low"], "dst": ["tag:web:80"] } ],
          "grants": [ { "src": ["tag:ci"], "dst": ["lan"], "ip": ["*"], "via": ["tag:web"] } ] }
        """;

    private static readonly TailnetPolicy[] Policies =
    [
        PolicyParser.Parse(TailnetPolicy.DefaultText).Policy!,
        Parse("""{ "acls": [ { "action": "accept", "src": ["alice@example.com"], "dst": ["tag:web:443"] } ] }"""),
        Parse("""{ "acls": [ { "action": "accept", "src": ["group:eng"], "dst": ["tag:db:5432", "autogroup:self:*"] } ] }"""),
        Parse("""{ "acls": [ { "action": "accept", "src": ["tag:web"], "dst": ["tag:db:*"] }, { "action": "accept", "src": ["low"], "dst": ["100.64.0.9:22"] } ] }"""),
        Parse("""{ "acls": [ { "action": "accept", "src": ["autogroup:member"], "dst": ["*:80"] }, { "action": "accept", "src": ["autogroup:tagged"], "dst": ["autogroup:tagged:*"] } ] }"""),
        Parse("""{ "acls": [] }"""),
        Parse("""{ "acls": [ { "action": "accept", "src": ["tag:ci", "bob@example.com"], "proto": "udp", "dst": ["tag:web:53", "tag:ci:53"] }, { "action": "accept", "src": ["alice@example.com"], "dst": ["tag:web:443"] } ] }"""),
        // Routes: a subnet by host name and by a wider CIDR, the internet through exit nodes, subnet sources.
        Parse("""{ "acls": [ { "action": "accept", "src": ["group:eng"], "dst": ["lan:22", "autogroup:internet:*"] }, { "action": "accept", "src": ["tag:ci"], "dst": ["198.18.0.0/15:*"] } ] }"""),
        Parse("""{ "grants": [ { "src": ["autogroup:member"], "dst": ["198.18.41.0/24", "tag:db"], "ip": ["tcp:22", "udp:53"] }, { "src": ["*"], "dst": ["autogroup:internet"], "ip": ["*"] } ] }"""),
        Parse("""{ "acls": [ { "action": "accept", "src": ["lan"], "dst": ["tag:web:80"] }, { "action": "accept", "src": ["carol@example.com"], "dst": ["*:*"] } ] }"""),
        // via: alice's subnet and internet only through tag:web routers; bob's through any.
        Parse("""{ "grants": [ { "src": ["alice@example.com"], "dst": ["lan", "autogroup:internet"], "ip": ["*"], "via": ["tag:web"] }, { "src": ["bob@example.com", "tag:ci"], "dst": ["198.18.0.0/15"], "ip": ["tcp:22"] }, { "src": ["alice@example.com"], "dst": ["tag:db"], "ip": ["22"] } ] }"""),
        // The same rules under names that stand for other things (members, a role's holders, an address, via tags).
        Parse(NamesOnBothSides),
        Parse(NamesOnBothSides, OtherNames, admins: ["carol@example.com"]),
        Parse(NamesOnBothSides.Replace("\"via\": [\"tag:web\"]", "\"via\": [\"tag:db\"]")),
    ];

    private static readonly ImmutableArray<System.Net.IPNetwork>[] RoutePlans =
    [
        [],
        [System.Net.IPNetwork.Parse("198.18.40.0/24")],
        [System.Net.IPNetwork.Parse("198.18.41.0/24"), System.Net.IPNetwork.Parse("198.18.40.128/25")],
        [System.Net.IPNetwork.Parse("198.18.41.0/24")],
    ];

    private static TailnetPolicy Parse(string text, string names = Names, string[]? admins = null)
    {
        var roles = new Dictionary<string, ImmutableArray<string>> { ["autogroup:admin"] = [.. admins ?? ["alice@example.com"]] };
        var result = PolicyParser.Parse(text.Insert(1, names), roleMembers: roles);
        Assert.True(result.IsValid, string.Join("\n", result.Issues));
        return result.Policy!;
    }

    /// <summary>A device of one of six identities, which routes (none, one or two subnets) and may be an exit node.</summary>
    private static PolicyDevice DeviceFor(int slot, int identity, int routing = 0) =>
        IdentityFor(slot, identity) with { Routes = RoutePlans[routing % RoutePlans.Length], ExitNode = routing / RoutePlans.Length % 2 == 1 };

    private static PolicyDevice IdentityFor(int slot, int identity)
    {
        var (user, tags) = (identity % 6) switch
        {
            0 => ("alice@example.com", ImmutableArray<string>.Empty),
            1 => ("bob@example.com", []),
            2 => ("carol@example.com", []),
            3 => (null, ["tag:web"]),
            4 => (null, ["tag:db", "tag:web"]),
            _ => ((string?)null, ["tag:ci"]),
        };
        return new PolicyDevice($"d{slot}", user, tags, $"100.64.0.{slot + 1}", $"fd7a:115c:a1e0::{slot + 1}");
    }

    private static HashSet<(string, string)> Pairs(PolicyEngine engine, IEnumerable<string> devices) =>
        devices.SelectMany(d => engine.VisiblePeers(d).Select(p => (d, p))).ToHashSet();

    [Property(MaxTest = 500)]
    public bool Incremental_changes_equal_a_compile_from_scratch(byte[][] operations)
    {
        var devices = new Dictionary<string, PolicyDevice>();
        var policy = Policies[0];
        var engine = PolicyEngine.Compile(policy, []);
        var reported = new HashSet<(string, string)>();
        foreach (var operation in (operations ?? []).Where(o => o is { Length: >= 3 }))
        {
            var slot = operation[1] % 12;
            PolicyChange change;
            switch (operation[0] % 4)
            {
                case 0:
                    var device = DeviceFor(slot, operation[2], operation.Length > 3 ? operation[3] : 0);
                    devices[device.DeviceId] = device;
                    change = engine.Upsert(device);
                    break;
                case 3:
                    // A route approved or withdrawn, or an exit node approved or withdrawn, on a device that is there.
                    if (!devices.TryGetValue($"d{slot}", out var router)) continue;
                    router = router with { Routes = RoutePlans[operation[2] % RoutePlans.Length], ExitNode = operation[2] / RoutePlans.Length % 2 == 1 };
                    devices[router.DeviceId] = router;
                    change = engine.Upsert(router);
                    break;
                case 1:
                    devices.Remove($"d{slot}");
                    change = engine.Remove($"d{slot}");
                    break;
                default:
                    policy = Policies[operation[2] % Policies.Length];
                    change = engine.ChangePolicy(policy);
                    break;
            }
            foreach (var pair in change.Removed) reported.Remove(pair);
            foreach (var pair in change.Added) reported.Add(pair);

            var scratch = PolicyEngine.Compile(policy, devices.Values);
            var expected = Pairs(scratch, devices.Keys);
            if (!expected.SetEquals(Pairs(engine, devices.Keys))) return false;
            if (!expected.SetEquals(reported)) return false;
            foreach (var id in devices.Keys)
                if (!scratch.FilterOf(id).Select(g => g.Key).SequenceEqual(engine.FilterOf(id).Select(g => g.Key))) return false;
            // What each viewer may send through each router (via) is the same too.
            foreach (var viewer in devices.Keys)
                foreach (var router in devices.Keys)
                {
                    var (a, b) = (scratch.UsableRoutes(viewer, router), engine.UsableRoutes(viewer, router));
                    if (!a.Routes.SequenceEqual(b.Routes) || a.ExitNode != b.ExitNode) return false;
                }
        }
        return true;
    }

    [Property(MaxTest = 100)]
    public bool Visibility_is_always_symmetric(byte[] identities, byte policyChoice)
    {
        var devices = (identities ?? []).Take(12).Select((identity, slot) => DeviceFor(slot, identity, identity / 6)).ToList();
        var engine = PolicyEngine.Compile(Policies[policyChoice % Policies.Length], devices);
        return devices.All(a => devices.All(b => engine.CanSee(a.DeviceId, b.DeviceId) == engine.CanSee(b.DeviceId, a.DeviceId)));
    }

    [Property(MaxTest = 100)]
    public bool No_device_of_one_tailnet_appears_in_anothers_output(byte[] identities, byte policyA, byte policyB)
    {
        // Two tenants, with the same address plan (every tailnet allocates from 100.64.0.0/10).
        var all = (identities ?? []).Take(16).Select((identity, slot) => (Tenant: identity % 2, Device: DeviceFor(slot % 8, identity)
            with { DeviceId = $"{(identity % 2 == 0 ? "a" : "b")}-{slot}" })).ToList();
        var tenantA = all.Where(d => d.Tenant == 0).Select(d => d.Device).DistinctBy(d => d.Ipv4).ToList();
        var tenantB = all.Where(d => d.Tenant == 1).Select(d => d.Device).DistinctBy(d => d.Ipv4).ToList();
        var engineA = PolicyEngine.Compile(Policies[policyA % Policies.Length], tenantA);
        var engineB = PolicyEngine.Compile(Policies[policyB % Policies.Length], tenantB);
        return tenantB.All(d => engineB.VisiblePeers(d.DeviceId).All(p => p.StartsWith("b-")))
            && tenantA.All(d => engineA.VisiblePeers(d.DeviceId).All(p => p.StartsWith("a-")));
    }

    [Fact]
    public void A_policy_that_changes_only_what_its_names_stand_for_recompiles_the_rules_that_use_them()
    {
        // The rules' text stays; group:eng (alice, bob → bob, carol), autogroup:admin (alice → carol), the host
        // low (100.64.0.0/29 → 100.64.0.8/29) and a grant's via (tag:web → tag:db) change, on both sides of the rules.
        var devices = Enumerable.Range(0, 12).Select(slot => DeviceFor(slot, slot, slot)).ToList();
        var ids = devices.Select(d => d.DeviceId).ToList();
        var (before, renamed, rerouted) = (Policies[^3], Policies[^2], Policies[^1]);
        var engine = PolicyEngine.Compile(before, devices);
        foreach (var next in new[] { renamed, before, rerouted })
        {
            engine.ChangePolicy(next);
            var scratch = PolicyEngine.Compile(next, devices);
            Assert.True(Pairs(scratch, ids).SetEquals(Pairs(engine, ids)), "who sees whom is what a compile from scratch gives");
            foreach (var id in ids)
            {
                Assert.Equal(Filter(scratch, id), Filter(engine, id));
                foreach (var router in ids)
                {
                    var (expected, held) = (scratch.UsableRoutes(id, router), engine.UsableRoutes(id, router));
                    Assert.Equal(expected.Routes.ToArray(), held.Routes.ToArray());
                    Assert.Equal(expected.ExitNode, held.ExitNode);
                }
            }
        }

        static IEnumerable<string> Filter(PolicyEngine engine, string id) =>
            engine.FilterOf(id).Select(g => $"{g.Key} from {string.Join(",", g.Sources)} routed {(g.Routed.IsDefault ? "" : string.Join(",", g.Routed))}");
    }

    [Fact]
    public void Grants_made_for_sources_since_changed_are_forgotten_so_a_long_lived_engine_does_not_grow_with_each_membership_change()
    {
        // A rule from a group to everyone; the group's membership changes a thousand times (people join and
        // leave, or sign in with new groups), never the same twice. Each change makes grants under new keys.
        static TailnetPolicy WithEngineers(int first)
        {
            var members = string.Join(", ", Enumerable.Range(first, 20).Select(i => $"\"u{i}@example.com\""));
            var result = PolicyParser.Parse($$"""{ "groups": { "group:eng": [{{members}}] }, "acls": [ { "action": "accept", "src": ["group:eng"], "dst": ["*:*"] } ] }""");
            Assert.True(result.IsValid, string.Join("\n", result.Issues));
            return result.Policy!;
        }
        var devices = Enumerable.Range(0, 50).Select(i => new PolicyDevice($"d{i}", $"u{i}@example.com", [], $"100.64.1.{i + 1}", $"fd7a:115c:a1e0::1:{i + 1}"));
        var engine = PolicyEngine.Compile(WithEngineers(0), devices);
        var peak = 0;
        for (var change = 1; change <= 1000; change++)
        {
            engine.ChangePolicy(WithEngineers(change));
            peak = Math.Max(peak, engine.CachedGrantCount);
        }
        // What the filters hold now is what a compile from scratch holds; the cache keeps little beyond it.
        Assert.Equal(PolicyEngine.Compile(WithEngineers(1000), devices).FilterOf("d0").Select(g => g.Key), engine.FilterOf("d0").Select(g => g.Key));
        Assert.True(peak < 300, $"the grant cache grew to {peak} for filters that hold {engine.FilterOf("d0").Length} grant(s)");
    }

    [Fact]
    public void A_user_whose_last_device_leaves_is_forgotten_so_a_long_lived_engine_does_not_grow_with_each_user_that_ever_joined()
    {
        var policy = PolicyParser.Parse("""{ "acls": [ { "action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"] } ] }""").Policy!;
        var engine = PolicyEngine.Compile(policy, [new PolicyDevice("d-stays", "stays@example.com", [], "100.64.1.1", "fd7a:115c:a1e0::1:1")]);
        for (var i = 0; i < 200; i++)
        {
            engine.Upsert(new PolicyDevice($"d{i}", $"u{i}@example.com", [], $"100.64.2.{i % 250 + 1}", $"fd7a:115c:a1e0::2:{i + 1}"));
            engine.Remove($"d{i}");
        }

        Assert.Equal(1, engine.UsersWithDevices);
        Assert.Equal(1, engine.DeviceCount);
    }
}
