using System.Collections.Immutable;
using Weft.Cluster.Policy;

namespace Weft.Cluster.Tests.Policy;

/// <summary>
/// The policy format and its meaning, case by case from Tailscale's ACL documentation: selectors,
/// ports, protocols, autogroups, hosts, tests, and the errors (with locations) of invalid policies.
/// </summary>
public class PolicyConformanceTests
{
    private const string Alice = "alice@example.com", Bob = "bob@example.com", Carol = "carol@example.com";

    private static readonly PolicyDevice AliceLaptop = new("alice-laptop", Alice, [], "100.64.0.1", "fd7a:115c:a1e0::1");
    private static readonly PolicyDevice BobLaptop = new("bob-laptop", Bob, [], "100.64.0.2", "fd7a:115c:a1e0::2");
    private static readonly PolicyDevice Web = new("web", null, ["tag:web"], "100.64.0.3", "fd7a:115c:a1e0::3");
    private static readonly PolicyDevice Db = new("db", null, ["tag:db"], "100.64.0.4", "fd7a:115c:a1e0::4");
    private static readonly PolicyDevice AlicePhone = new("alice-phone", Alice, [], "100.64.0.5", "fd7a:115c:a1e0::5");
    private static readonly PolicyDevice CarolLaptop = new("carol-laptop", Carol, [], "100.64.0.6", "fd7a:115c:a1e0::6");
    private static readonly PolicyDevice[] Devices = [AliceLaptop, BobLaptop, Web, Db, AlicePhone, CarolLaptop];

    private const string Names = """
        "groups": { "group:eng": ["alice@example.com", "bob@example.com"], "group:ops": ["carol@example.com"] },
        "tagOwners": { "tag:web": ["group:ops"], "tag:db": ["group:ops"], "tag:spare": [] },
        "hosts": { "db-host": "100.64.0.4", "office": "100.64.0.0/30" },
        """;

    private static TailnetPolicy Parse(string body)
    {
        var result = PolicyParser.Parse("{" + Names + body + "}");
        Assert.True(result.IsValid, string.Join("\n", result.Issues));
        return result.Policy!;
    }

    private static PolicyEngine Engine(string body) => PolicyEngine.Compile(Parse(body), Devices);

    private static string[] Sees(PolicyEngine engine, PolicyDevice device) => [.. engine.VisiblePeers(device.DeviceId).Order()];

    private static bool Allowed(string body, string src, string dst, string? proto = null) =>
        PolicyChecks.Check(Parse(body), src, dst, proto, Devices).Allowed;

    private static void AssertSymmetric(PolicyEngine engine)
    {
        foreach (var a in Devices)
            foreach (var b in Devices.Where(d => d != a))
                Assert.Equal(engine.CanSee(a.DeviceId, b.DeviceId), engine.CanSee(b.DeviceId, a.DeviceId));
    }

    [Fact]
    public void The_default_policy_lets_every_device_reach_every_other()
    {
        var policy = PolicyParser.Parse(TailnetPolicy.DefaultText).Policy!;
        var engine = PolicyEngine.Compile(policy, Devices);

        foreach (var device in Devices) Assert.Equal(Devices.Length - 1, engine.VisibleCount(device.DeviceId));
        var grant = Assert.Single(engine.FilterOf(Web.DeviceId));
        Assert.Equal(["*"], grant.Sources.ToArray());
        Assert.Equal([PortRange.All], grant.Ports.ToArray());
        Assert.Equal([6, 17, 1, 58], grant.Protocols.ToArray());
    }

    [Fact]
    public void A_user_reaches_a_tag_and_visibility_is_symmetric()
    {
        var engine = Engine("""
            "acls": [ { "action": "accept", "src": ["alice@example.com"], "dst": ["tag:web:443"] } ],
            """);

        Assert.Equal(["web"], Sees(engine, AliceLaptop));
        Assert.Equal(["web"], Sees(engine, AlicePhone));
        Assert.Equal(["alice-laptop", "alice-phone"], Sees(engine, Web)); // web sees who may reach it
        Assert.Empty(Sees(engine, BobLaptop));
        Assert.Empty(Sees(engine, Db));
        var grant = Assert.Single(engine.FilterOf(Web.DeviceId));
        Assert.Equal(["user:alice@example.com"], grant.Sources.ToArray());
        Assert.Equal([new PortRange(443, 443)], grant.Ports.ToArray());
        Assert.Empty(engine.FilterOf(AliceLaptop.DeviceId)); // nothing may reach alice
        AssertSymmetric(engine);
    }

    [Fact]
    public void Groups_expand_to_their_users_and_tags_to_their_devices()
    {
        var engine = Engine("""
            "acls": [
              { "action": "accept", "src": ["group:eng"], "dst": ["tag:db:5432"] },
              { "action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"] },
            ],
            """);

        Assert.Equal(["alice-laptop", "alice-phone", "bob-laptop", "web"], Sees(engine, Db));
        Assert.Empty(Sees(engine, CarolLaptop));
        Assert.Equal(["user:alice@example.com", "user:bob@example.com"], engine.FilterOf(Db.DeviceId).SelectMany(g => g.Sources).Where(s => s.StartsWith("user:")).Order());
        Assert.Contains(engine.FilterOf(Db.DeviceId), g => g.Sources.SequenceEqual(["tag:web"]));
        AssertSymmetric(engine);
    }

    [Fact]
    public void Autogroup_member_is_every_untagged_device_and_tagged_every_tagged_one()
    {
        var engine = Engine("""
            "acls": [
              { "action": "accept", "src": ["autogroup:member"], "dst": ["tag:web:80"] },
              { "action": "accept", "src": ["autogroup:tagged"], "dst": ["tag:db:*"] },
            ],
            """);

        Assert.Equal(["alice-laptop", "alice-phone", "bob-laptop", "carol-laptop", "db"], Sees(engine, Web));
        Assert.Equal(["web"], Sees(engine, Db));
        Assert.Contains(engine.FilterOf(Web.DeviceId), g => g.Sources.SequenceEqual(["autogroup:member"]));
        Assert.Contains(engine.FilterOf(Db.DeviceId), g => g.Sources.SequenceEqual(["autogroup:tagged"]));
        AssertSymmetric(engine);
    }

    [Fact]
    public void Autogroup_self_connects_only_a_users_own_devices()
    {
        var body = """
            "acls": [ { "action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"] } ],
            """;
        var engine = Engine(body);

        Assert.Equal(["alice-phone"], Sees(engine, AliceLaptop));
        Assert.Empty(Sees(engine, BobLaptop));
        Assert.Empty(Sees(engine, Web));
        Assert.Equal(["user:alice@example.com"], Assert.Single(engine.FilterOf(AlicePhone.DeviceId)).Sources.ToArray());
        Assert.True(Allowed(body, Alice, "alice@example.com:22"));
        Assert.False(Allowed(body, Alice, "bob@example.com:22"));
        AssertSymmetric(engine);
    }

    [Fact]
    public void Hosts_cidrs_and_tailnet_ips_match_by_address()
    {
        var engine = Engine("""
            "acls": [
              { "action": "accept", "src": ["office"], "dst": ["db-host:5432"] },
              { "action": "accept", "src": ["100.64.0.6"], "dst": ["100.64.0.3/32:80"] },
            ],
            """);

        // office is 100.64.0.0/30: alice's laptop (.1), bob's (.2) and web (.3).
        Assert.Equal(["alice-laptop", "bob-laptop", "web"], Sees(engine, Db));
        var dbGrant = Assert.Single(engine.FilterOf(Db.DeviceId));
        Assert.Equal(["100.64.0.0/30"], dbGrant.Sources.ToArray());
        Assert.True(dbGrant.CoversIpv4);
        Assert.False(dbGrant.CoversIpv6); // the host names the IPv4 address only
        Assert.Equal(["carol-laptop", "db"], Sees(engine, Web)); // web is in the office range too
        AssertSymmetric(engine);
    }

    [Fact]
    public void Ports_lists_ranges_and_wildcards()
    {
        var body = """
            "acls": [ { "action": "accept", "src": ["*"], "dst": ["tag:web:80,443,8000-8099"] } ],
            """;

        Assert.True(Allowed(body, Bob, "tag:web:80"));
        Assert.True(Allowed(body, Bob, "tag:web:443"));
        Assert.True(Allowed(body, Bob, "tag:web:8050"));
        Assert.False(Allowed(body, Bob, "tag:web:8100"));
        Assert.False(Allowed(body, Bob, "tag:web:22"));
        Assert.True(Allowed("""
            "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] } ],
            """, Bob, "100.64.0.4:65535"));
    }

    [Fact]
    public void Protocols_restrict_a_rule_and_default_to_tcp_udp_and_icmp()
    {
        var udpOnly = """
            "acls": [ { "action": "accept", "src": ["*"], "proto": "udp", "dst": ["tag:web:53"] } ],
            """;
        Assert.True(Allowed(udpOnly, Bob, "tag:web:53", "udp"));
        Assert.False(Allowed(udpOnly, Bob, "tag:web:53", "tcp"));
        var numeric = """
            "acls": [ { "action": "accept", "src": ["*"], "proto": "132", "dst": ["tag:web:9"] } ],
            """;
        Assert.True(Allowed(numeric, Bob, "tag:web:9", "sctp"));
        var defaults = """
            "acls": [ { "action": "accept", "src": ["*"], "dst": ["tag:web:*"] } ],
            """;
        Assert.True(Allowed(defaults, Bob, "tag:web:7", "icmp"));
        Assert.True(Allowed(defaults, Bob, "tag:web:7", "udp"));
        Assert.False(Allowed(defaults, Bob, "tag:web:7", "gre"));
        var icmp = Engine("""
            "acls": [ { "action": "accept", "src": ["*"], "proto": "icmp", "dst": ["tag:web:*"] } ],
            """);
        Assert.Equal([1, 58], Assert.Single(icmp.FilterOf(Web.DeviceId)).Protocols.ToArray());
    }

    [Fact]
    public void Embedded_tests_pass_or_fail_with_the_test_location()
    {
        var passing = PolicyParser.Parse("{" + Names + """
            "acls": [ { "action": "accept", "src": ["group:eng"], "dst": ["tag:web:443"] } ],
            "tests": [
              { "src": "alice@example.com", "accept": ["tag:web:443"], "deny": ["tag:web:22", "tag:db:443"] },
              { "src": "group:eng", "accept": ["tag:web:443"] },
              { "src": "carol@example.com", "deny": ["tag:web:443"] },
            ],
            }
            """).Policy!;
        Assert.Empty(PolicyChecks.RunTests(passing, Devices));

        var failing = PolicyParser.Parse("{" + Names + """
            "acls": [ { "action": "accept", "src": ["group:eng"], "dst": ["tag:web:443"] } ],
            "tests": [
              { "src": "carol@example.com", "accept": ["tag:web:443"] },
              { "src": "bob@example.com", "deny": ["100.64.0.3:443"] },
            ],
            }
            """).Policy!;
        var issues = PolicyChecks.RunTests(failing, Devices);
        Assert.Equal(2, issues.Length);
        Assert.Equal("tests[0]", issues[0].Path);
        Assert.Equal(5, issues[0].Line);
        Assert.Contains("to be accepted, but no rule allows it", issues[0].Message);
        Assert.Contains("to be denied, but acls[0] allows it", issues[1].Message); // the IP is web's: it counts as tag:web
    }

    [Theory]
    [InlineData("autogroup:admin", "accept", null)]
    [InlineData("autogroup:owner", "deny", null)]
    [InlineData("group:empty", "accept", "group:empty has no members, so there is no one to check")]
    public void Tests_from_role_autogroups_and_empty_groups_are_run_or_reported_never_thrown(string source, string kind, string? issue)
    {
        var roles = new Dictionary<string, ImmutableArray<string>> { ["autogroup:admin"] = [Alice], ["autogroup:owner"] = [Carol] };
        var policy = PolicyParser.Parse("""
            { "groups": { "group:empty": [] }, "tagOwners": { "tag:web": [] },
              "acls": [ { "action": "accept", "src": ["autogroup:admin"], "dst": ["tag:web:22"] } ],
              "tests": [ { "src": "SOURCE", "KIND": ["tag:web:22"] } ] }
            """.Replace("SOURCE", source).Replace("KIND", kind), roleMembers: roles);
        Assert.True(policy.IsValid, string.Join("\n", policy.Issues));

        var issues = PolicyChecks.RunTests(policy.Policy!, Devices);

        if (issue is null) Assert.Empty(issues);
        else Assert.Contains(issue, Assert.Single(issues).Message);
    }

    [Fact]
    public void A_deny_test_from_a_group_fails_when_any_member_is_let_through()
    {
        var policy = Parse("""
            "acls": [ { "action": "accept", "src": ["alice@example.com"], "dst": ["tag:web:443"] } ],
            "tests": [
              { "src": "group:eng", "deny": ["tag:web:443"] },
              { "src": "group:ops", "deny": ["tag:web:443"] },
              { "src": "alice@example.com", "deny": ["group:ops:443"] },
            ],
            """);

        var issue = Assert.Single(PolicyChecks.RunTests(policy, Devices));

        Assert.Equal("tests[0]", issue.Path);
        Assert.Contains("expected group:eng → tag:web:443 to be denied, but acls[0] allows it (for alice@example.com)", issue.Message);
    }

    public static TheoryData<string, int, int, string> InvalidPolicies => new()
    {
        { """{ "acls": [], "bogus": 1 }""", 1, 15, "unknown field \"bogus\"" },
        { """{ "grants": [ { "src": ["*"], "dst": ["*"], "ip": ["*"], "app": { "example.com/cap/x": [{}] } } ] }""", 1, 58, "application capabilities (\"app\") are not supported" },
        { """{ "grants": [ { "src": ["*"], "dst": ["*"], "ip": ["*"], "via": ["tag:exit"] } ] }""", 1, 66, "tag:exit is not defined in tagOwners" },
        { """{ "ssh": [] }""", 1, 3, "\"ssh\" is not supported yet" },
        { """{ "postures": {} }""", 1, 3, "\"postures\" is not supported yet" },
        { "{ \"acls\": [\n  { \"action\": \"accept\", \"src\": [\"group:nope\"], \"dst\": [\"*:*\"] }\n] }", 2, 33, "group:nope is not defined in groups" },
        { """{ "acls": [ { "action": "accept", "src": ["tag:nope"], "dst": ["*:*"] } ] }""", 1, 43, "tag:nope is not defined in tagOwners" },
        { """{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["nohost:22"] } ] }""", 1, 57, "not a user, group:, tag:, autogroup:, IP, CIDR or a host" },
        { """{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:70000"] } ] }""", 1, 57, "port 70000 is out of range" },
        { """{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:90-80"] } ] }""", 1, 57, "runs backwards" },
        { """{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:http"] } ] }""", 1, 57, "\"http\" is not a port" },
        { """{ "acls": [ { "action": "accept", "src": ["100.64.0.0/99"], "dst": ["*:*"] } ] }""", 1, 43, "is not a valid IP address or CIDR prefix" },
        { """{ "acls": [ { "action": "deny", "src": ["*"], "dst": ["*:*"] } ] }""", 1, 25, "the only action is \"accept\"" },
        { """{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["tag:web"] } ] }""", 1, 57, "needs ports" },
        { """{ "acls": [ { "action": "accept", "src": ["autogroup:self"], "dst": ["*:*"] } ] }""", 1, 43, "autogroup:self can only be a destination" },
        { """{ "acls": [ { "action": "accept", "src": ["autogroup:internet"], "dst": ["*:*"] } ] }""", 1, 43, "autogroup:internet can only be a destination" },
        { """{ "acls": [ { "action": "accept", "src": ["*"], "proto": "icmp", "dst": ["*:22"] } ] }""", 1, 74, "has no ports" },
        { """{ "acls": [ { "action": "accept", "src": ["*"], "proto": "bogus", "dst": ["*:*"] } ] }""", 1, 58, "unknown proto" },
        { """{ "groups": { "group:a": ["x@y.z"], "group:b": ["group:a"] } }""", 1, 49, "groups cannot contain other groups" },
        { """{ "hosts": { "db": "not-an-ip" } }""", 1, 20, "is not an IP address or CIDR prefix" },
        { """{ "tagOwners": { "tag:x": ["group:missing"] } }""", 1, 28, "group:missing is not defined in groups" },
        { """{ "acls": [ { "action": "accept", "dst": ["*:*"] } ] }""", 1, 13, "missing \"src\"" },
        { """{ "tests": [ { "src": "*", "accept": ["*:22"] } ] }""", 1, 23, "a test's src is one user" },
        { """{ "acls": 5 }""", 1, 11, "expected an array" },
        { "{ \"acls\": [ } ", 1, 13, "expected a value" },
    };

    [Theory]
    [MemberData(nameof(InvalidPolicies))]
    public void Invalid_policies_are_refused_with_a_precise_location(string text, int line, int column, string expected)
    {
        var result = PolicyParser.Parse(text);

        Assert.Null(result.Policy);
        var issue = Assert.Single(result.Issues, i => i.Message.Contains(expected));
        Assert.Equal((line, column), (issue.Line, issue.Column));
    }

    [Fact]
    public void Every_problem_is_reported_not_only_the_first()
    {
        var result = PolicyParser.Parse("""
            {
              "acls": [
                { "action": "accept", "src": ["group:a"], "dst": ["tag:b:22"] },
                { "action": "accept", "src": ["*"], "dst": ["*:99999"] },
              ],
            }
            """);

        Assert.Equal(3, result.Issues.Length);
        Assert.Equal([3, 3, 4], result.Issues.Select(i => i.Line));
    }
}
