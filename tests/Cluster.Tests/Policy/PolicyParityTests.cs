using System.Collections.Immutable;
using System.Net;
using Weft.Cluster.Policy;

namespace Weft.Cluster.Tests.Policy;

/// <summary>
/// Policies written for Tailscale get Tailscale's answer here, or a refusal with a reason. Each case
/// names the documentation it follows:
/// <list type="bullet">
/// <item>[SYNTAX] tailscale.com/kb/1337/policy-syntax; [SAMPLES] tailscale.com/kb/1192/acl-samples;</item>
/// <item>[GRANTS] tailscale.com/kb/1538/grants-syntax; [MIG] tailscale.com/kb/1542/grants-migration;</item>
/// <item>[TARGETS] tailscale.com/kb/1396/targets; [SUBNETS] tailscale.com/kb/1019/subnets; [EXIT] tailscale.com/kb/1103/exit-nodes;</item>
/// <item>[CODE] the tailscale/tailscale repository (tailcfg.CheckTag, wgengine/filter).</item>
/// </list>
/// Where the documentation is silent the test name says so, and Weft refuses (fails closed).
/// </summary>
public class PolicyParityTests
{
    private const string Alice = "alice@example.com", Bob = "bob@example.com";

    private static readonly PolicyDevice AliceLaptop = new("alice-laptop", Alice, [], "100.64.0.1", "fd7a:115c:a1e0::1");
    private static readonly PolicyDevice BobLaptop = new("bob-laptop", Bob, [], "100.64.0.2", "fd7a:115c:a1e0::2");
    private static readonly PolicyDevice Web = new("web", null, ["tag:web"], "100.64.0.3", "fd7a:115c:a1e0::3");

    /// <summary>A subnet router for 198.18.40.0/24 (approved), tagged tag:router.</summary>
    private static readonly PolicyDevice Router = new("router", null, ["tag:router"], "100.64.0.4", "fd7a:115c:a1e0::4", [IPNetwork.Parse("198.18.40.0/24")]);

    /// <summary>An approved exit node, tagged tag:exit.</summary>
    private static readonly PolicyDevice Exit = new("exit", null, ["tag:exit"], "100.64.0.5", "fd7a:115c:a1e0::5", [], ExitNode: true);

    private static readonly PolicyDevice[] Devices = [AliceLaptop, BobLaptop, Web, Router, Exit];

    private const string Names = """
        "groups": { "group:eng": ["alice@example.com"] },
        "tagOwners": { "tag:web": ["group:eng"], "tag:router": [], "tag:exit": [] },
        """;

    private static PolicyParseResult ParseRaw(string text) => PolicyParser.Parse(text);

    private static TailnetPolicy Valid(string text)
    {
        var result = PolicyParser.Parse(text);
        Assert.True(result.IsValid, string.Join("\n", result.Issues));
        return result.Policy!;
    }

    private static TailnetPolicy WithNames(string body) => Valid("{" + Names + body + "}");

    private static PolicyIssue Refused(string text)
    {
        var result = PolicyParser.Parse(text);
        Assert.Null(result.Policy);
        return result.Issues[0];
    }

    private static string[] Sees(PolicyEngine engine, PolicyDevice device) => [.. engine.VisiblePeers(device.DeviceId).Order()];

    // ------------------------------------------------------------------ no acls

    [Theory]
    [InlineData("{}")]
    [InlineData("""{ "groups": { "group:eng": ["alice@example.com"] } }""")]
    [InlineData("""{ "tagOwners": { "tag:web": [] } }""")]
    [InlineData("""{ "hosts": { "nas": "100.64.0.9" } }""")]
    public void A_policy_without_acls_allows_everything_like_the_default_SAMPLES_allow_all(string text)
    {
        var engine = PolicyEngine.Compile(Valid(text), Devices);

        foreach (var device in Devices) Assert.Equal(Devices.Length - 1, engine.VisibleCount(device.DeviceId));
        var grant = Assert.Single(engine.FilterOf(Web.DeviceId));
        Assert.Equal(["*"], grant.Sources.ToArray());
        Assert.Equal([PortRange.All], grant.Ports.ToArray());
        Assert.True(PolicyChecks.Check(Valid(text), Bob, "tag:web:22", null, Devices).Allowed);
    }

    [Fact]
    public void An_empty_acls_list_denies_everything_SAMPLES_deny_all()
    {
        var engine = PolicyEngine.Compile(Valid("""{ "acls": [] }"""), Devices);

        foreach (var device in Devices) Assert.Empty(engine.VisiblePeers(device.DeviceId));
    }

    [Fact]
    public void A_policy_with_grants_alone_gets_no_implicit_allow_all_documentation_silent_EXIT_implies_it()
    {
        var engine = PolicyEngine.Compile(WithNames("""
            "grants": [ { "src": ["alice@example.com"], "dst": ["tag:web"], "ip": ["443"] } ],
            """), Devices);

        Assert.Equal(["web"], Sees(engine, AliceLaptop));
        Assert.Empty(Sees(engine, BobLaptop));
    }

    // ------------------------------------------------------------------ IP literals

    [Theory]
    [InlineData("100.64.1")]      // inet_aton: 100.64.0.1
    [InlineData("10.0")]          // inet_aton: 10.0.0.0
    [InlineData("1.2.3")]
    [InlineData("0x0a.0.0.1")]    // hexadecimal
    [InlineData("012.0.0.1")]     // leading zero (octal in inet_aton)
    [InlineData("100.64.0.256")]
    [InlineData("::ffff:1.2.3")]
    [InlineData("fe80::1%eth0")]
    [InlineData("100.64.0.0/010")]
    [InlineData("100.64.0.1/33")]
    [InlineData("100.64.1.2/10")] // host bits set: a prefix names its network
    public void Shorthand_and_non_canonical_ip_literals_are_refused_everywhere_as_gos_netip_does(string literal)
    {
        Assert.Contains("not", Refused($$"""{ "hosts": { "web": "{{literal}}" } }""").Message);
        Refused($$"""{ "acls": [ { "action": "accept", "src": ["{{literal}}"], "dst": ["*:*"] } ] }""");
        var destination = literal.Contains(':') ? $"[{literal}]:22" : $"{literal}:22";
        Refused($$"""{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["{{destination}}"] } ] }""");
        Refused($$"""{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] } ], "tests": [ { "src": "{{literal}}", "accept": ["100.64.0.1:22"] } ] }""");
        Refused($$"""{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] } ], "tests": [ { "src": "alice@example.com", "accept": ["{{destination}}"] } ] }""");
        // The admin API's access check reads addresses the same way.
        Assert.Throws<ArgumentException>(() => PolicyChecks.Check(Valid("{}"), literal, "100.64.0.1:22", null, Devices));
    }

    [Fact]
    public void The_security_bug_a_host_written_100_64_1_no_longer_opens_port_22_on_100_64_0_1()
    {
        var issue = Refused("""
            {
              "hosts": { "web": "100.64.1" },
              "acls": [ { "action": "accept", "src": ["*"], "dst": ["web:22"] } ],
            }
            """);

        Assert.Equal((2, 21), (issue.Line, issue.Column));
        Assert.Contains("\"100.64.1\" is not an IP address or CIDR prefix", issue.Message);
    }

    [Theory]
    [InlineData("100.64.0.1")]
    [InlineData("fd7a:115c:a1e0::1")]
    [InlineData("::ffff:100.64.0.1")]
    [InlineData("198.18.40.0/24")]
    [InlineData("2001:db8::/32")]
    [InlineData("0.0.0.0/0")]
    public void Canonical_addresses_and_prefixes_are_accepted(string literal) =>
        Valid($$"""{ "hosts": { "h": "{{literal}}" }, "acls": [ { "action": "accept", "src": ["h"], "dst": ["h:22"] } ] }""");

    // ------------------------------------------------------------------ ports, tags, tests

    [Theory]
    [InlineData("tag:web:0")]
    [InlineData("tag:web:0-100")]
    [InlineData("tag:web:22,0")]
    public void Port_0_is_refused_in_rules_as_tailscale_first_port_must_be_above_0(string destination)
    {
        var issue = Refused("{" + Names + $$"""  "acls": [ { "action": "accept", "src": ["*"], "dst": ["{{destination}}"] } ] }""");
        Assert.Contains("port 0 is not a port", issue.Message);
    }

    [Theory]
    [InlineData("tag:1web")]
    [InlineData("tag:-web")]
    [InlineData("tag:Web")]      // Tailscale lowercases tags; Weft asks for them in lowercase
    [InlineData("tag:")]
    [InlineData("tag:web_1")]
    public void Tag_names_start_with_a_letter_CODE_CheckTag(string tag)
    {
        var issue = Refused($$"""{ "tagOwners": { "{{tag}}": [] } }""");
        Assert.Contains("start", issue.Message);
        Assert.Equal(PolicyNames.TagRule, issue.Message[(issue.Message.IndexOf(": ", StringComparison.Ordinal) + 2)..]);
    }

    [Fact]
    public void A_tag_name_with_letters_digits_and_dashes_is_accepted() =>
        Valid("""{ "tagOwners": { "tag:web-2": [], "tag:a": [] }, "acls": [ { "action": "accept", "src": ["tag:web-2"], "dst": ["tag:a:1"] } ] }""");

    [Fact]
    public void A_test_with_neither_accept_nor_deny_is_refused_documentation_silent_fail_closed()
    {
        var issue = Refused("""{ "acls": [], "tests": [ { "src": "alice@example.com" } ] }""");
        Assert.Contains("a test needs \"accept\" or \"deny\"", issue.Message);
        Refused("""{ "acls": [], "tests": [ { "src": "alice@example.com", "accept": [], "deny": [] } ] }""");
    }

    [Theory]
    [InlineData("100.64.0.0/10:22")]
    [InlineData("100.64.0.1/32:22")]
    [InlineData("[fd7a:115c:a1e0::1/128]:22")]
    public void A_test_destination_is_one_address_never_a_prefix_SYNTAX_tests(string destination)
    {
        var issue = Refused($$"""{ "acls": [], "tests": [ { "src": "alice@example.com", "deny": ["{{destination}}"] } ] }""");
        Assert.Contains("a test checks one address, not a prefix", issue.Message);
    }

    [Fact]
    public void A_test_from_a_prefix_is_refused_and_icmp_tests_use_port_0_SYNTAX_tests()
    {
        Assert.Contains("one address, not the prefix",
            Refused("""{ "acls": [], "tests": [ { "src": "100.64.0.0/24", "deny": ["100.64.0.1:22"] } ] }""").Message);
        Valid("""{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] } ], "tests": [ { "src": "alice@example.com", "proto": "icmp", "accept": ["100.64.0.3:0"] } ] }""");
    }

    // ------------------------------------------------------------------ grants

    [Fact]
    public void Grants_compile_to_the_same_filters_as_the_equivalent_acls_MIG()
    {
        var acls = WithNames("""
            "acls": [
              { "action": "accept", "src": ["group:eng"], "proto": "tcp", "dst": ["tag:web:443", "tag:web:80"] },
              { "action": "accept", "src": ["group:eng"], "proto": "udp", "dst": ["tag:web:53"] },
              { "action": "accept", "src": ["bob@example.com"], "dst": ["198.18.40.0/24:*"] },
            ],
            """);
        var grants = WithNames("""
            "grants": [
              { "src": ["group:eng"], "dst": ["tag:web"], "ip": ["tcp:443", "tcp:80", "udp:53"] },
              { "src": ["bob@example.com"], "dst": ["198.18.40.0/24"], "ip": ["*"] },
            ],
            """);
        var fromAcls = PolicyEngine.Compile(acls, Devices);
        var fromGrants = PolicyEngine.Compile(grants, Devices);

        foreach (var device in Devices)
        {
            Assert.Equal(Sees(fromAcls, device), Sees(fromGrants, device));
            Assert.Equal(fromAcls.FilterOf(device.DeviceId).Select(g => g.Key), fromGrants.FilterOf(device.DeviceId).Select(g => g.Key));
        }
        Assert.Equal(["exit", "router", "web"], Sees(fromGrants, AliceLaptop).Concat(Sees(fromGrants, BobLaptop)).Order());
    }

    [Fact]
    public void Acls_and_grants_in_one_policy_add_up_GRANTS()
    {
        var engine = PolicyEngine.Compile(WithNames("""
            "acls": [ { "action": "accept", "src": ["alice@example.com"], "dst": ["tag:web:22"] } ],
            "grants": [ { "src": ["bob@example.com"], "dst": ["tag:web"], "ip": ["icmp:*"] } ],
            """), Devices);

        Assert.Equal(["alice-laptop", "bob-laptop"], Sees(engine, Web));
        Assert.Contains(engine.FilterOf(Web.DeviceId), g => g.Protocols.SequenceEqual([IpProtocols.Icmp, IpProtocols.IcmpV6]));
    }

    [Theory]
    [InlineData("""{ "grants": [ { "src": ["*"], "dst": ["*"] } ] }""", "missing \"ip\"")]
    [InlineData("""{ "grants": [ { "src": ["*"], "dst": ["*"], "ip": ["icmp:22"] } ] }""", "icmp has no ports")]
    [InlineData("""{ "grants": [ { "src": ["*"], "dst": ["*"], "ip": ["tcp:0"] } ] }""", "port 0 is not a port")]
    [InlineData("""{ "grants": [ { "src": ["*"], "dst": ["*"], "ip": ["bogus:80"] } ] }""", "unknown proto")]
    [InlineData("""{ "grants": [ { "src": ["*"], "dst": ["*:80"], "ip": ["*"] } ] }""", "is not a user")]
    [InlineData("""{ "grants": [ { "src": ["*"], "dst": ["*"], "ip": ["*"], "app": { "example.com/cap/x": [{}] } } ] }""", "application capabilities")]
    [InlineData("""{ "grants": [ { "src": ["autogroup:internet"], "dst": ["*"], "ip": ["*"] } ] }""", "can only be a destination")]
    [InlineData("""{ "grants": [ { "src": ["*"], "dst": ["*"], "ip": ["*"], "via": ["alice@example.com"] } ] }""", "via takes tags only")]
    [InlineData("""{ "grants": [ { "src": ["*"], "dst": ["*"], "ip": ["*"], "via": ["tag:nowhere"] } ] }""", "tag:nowhere is not defined in tagOwners")]
    public void Malformed_or_unsupported_grants_are_refused_with_a_reason(string text, string expected) =>
        Assert.Contains(expected, Refused(text).Message);

    // ------------------------------------------------------------------ routes and exit nodes

    [Fact]
    public void A_rule_on_a_subnet_makes_its_router_visible_and_opens_the_subnet_on_the_router_SUBNETS()
    {
        var engine = PolicyEngine.Compile(WithNames("""
            "acls": [ { "action": "accept", "src": ["group:eng"], "dst": ["198.18.40.0/25:22"] } ],
            """), Devices);

        // 198.18.0.0/15 is not a private range, so it is internet to Tailscale (TARGETS, autogroup:internet):
        // the exit node, which routes 0.0.0.0/0, could carry it too, and is a peer as well.
        Assert.Equal(["exit", "router"], Sees(engine, AliceLaptop));
        Assert.Empty(Sees(engine, BobLaptop));
        var grant = Assert.Single(engine.FilterOf(Router.DeviceId));
        Assert.Equal(["198.18.40.0/25"], grant.Routed.ToArray()); // only the part of the route the rule names
        Assert.False(grant.CoversIpv4);                            // not the router's own address
    }

    [Fact]
    public void A_rule_on_the_routers_tag_opens_the_router_itself_not_its_subnet_EXIT_and_SUBNETS()
    {
        var engine = PolicyEngine.Compile(WithNames("""
            "acls": [ { "action": "accept", "src": ["group:eng"], "dst": ["tag:router:22", "tag:exit:22"] } ],
            """), Devices);

        Assert.Equal(["exit", "router"], Sees(engine, AliceLaptop));
        Assert.All(engine.FilterOf(Router.DeviceId).Concat(engine.FilterOf(Exit.DeviceId)), g => Assert.Empty(g.Routed));
    }

    [Fact]
    public void Star_covers_approved_subnets_and_on_an_exit_node_every_address_TARGETS_wildcard()
    {
        var engine = PolicyEngine.Compile(Valid("{}"), Devices);

        Assert.Equal(["198.18.40.0/24"], Assert.Single(engine.FilterOf(Router.DeviceId)).Routed.ToArray());
        Assert.Equal(["0.0.0.0/0", "::/0"], Assert.Single(engine.FilterOf(Exit.DeviceId)).Routed.ToArray());
    }

    [Fact]
    public void Autogroup_internet_reaches_exit_nodes_and_the_public_internet_only_TARGETS()
    {
        var policy = WithNames("""
            "acls": [ { "action": "accept", "src": ["alice@example.com"], "dst": ["autogroup:internet:*"] } ],
            """);
        var engine = PolicyEngine.Compile(policy, Devices);

        Assert.Equal(["exit"], Sees(engine, AliceLaptop));
        var opened = Assert.Single(engine.FilterOf(Exit.DeviceId)).Routed.Select(IPNetwork.Parse).ToList();
        bool Opens(string address) => opened.Any(p => p.Contains(IPAddress.Parse(address)));
        Assert.True(Opens("198.19.0.7"));
        Assert.True(Opens("8.8.8.8"));
        Assert.True(Opens("2001:db8::1"));
        Assert.False(Opens("10.1.2.3"));
        Assert.False(Opens("172.16.0.1"));
        Assert.False(Opens("192.168.1.1"));
        Assert.False(Opens("100.64.0.3"));   // never the tailnet
        Assert.False(Opens("169.254.1.1"));
        Assert.False(Opens("fd7a:115c:a1e0::3"));
        Assert.True(PolicyChecks.Check(policy, Alice, "8.8.8.8:443", null, Devices).Allowed);
        Assert.False(PolicyChecks.Check(policy, Alice, "100.64.0.3:443", null, Devices).Allowed);
        Assert.False(PolicyChecks.Check(policy, Bob, "8.8.8.8:443", null, Devices).Allowed);
    }

    [Fact]
    public void Via_sends_a_subnet_and_the_internet_through_the_named_routers_only_VIA()
    {
        // Two routers for one subnet, in two regions, and two exit nodes.
        var eu = Router with { DeviceId = "router-eu", Tags = ["tag:eu"], Ipv4 = "100.64.0.10", Ipv6 = "fd7a:115c:a1e0::10" };
        var us = Router with { DeviceId = "router-us", Tags = ["tag:us"], Ipv4 = "100.64.0.11", Ipv6 = "fd7a:115c:a1e0::11" };
        var exitEu = Exit with { DeviceId = "exit-eu", Tags = ["tag:eu"], Ipv4 = "100.64.0.12", Ipv6 = "fd7a:115c:a1e0::12" };
        var exitUs = Exit with { DeviceId = "exit-us", Tags = ["tag:us"], Ipv4 = "100.64.0.13", Ipv6 = "fd7a:115c:a1e0::13" };
        var policy = Valid("""
            {
              "tagOwners": { "tag:eu": [], "tag:us": [] },
              "grants": [
                { "src": ["alice@example.com"], "dst": ["198.18.40.0/24", "autogroup:internet"], "ip": ["*"], "via": ["tag:us"] },
                { "src": ["alice@example.com"], "dst": ["tag:eu"], "ip": ["22"] },
                { "src": ["bob@example.com"], "dst": ["198.18.40.0/24"], "ip": ["*"] },
              ],
            }
            """);
        var engine = PolicyEngine.Compile(policy, [AliceLaptop, BobLaptop, eu, us, exitEu, exitUs]);

        // alice sees the EU devices only for SSH; her subnet and internet go through the US ones.
        Assert.Equal(["exit-eu", "exit-us", "router-eu", "router-us"], Sees(engine, AliceLaptop));
        Assert.Equal(("198.18.40.0/24", false), Usable(engine, "alice-laptop", "router-us"));
        Assert.Equal(("", false), Usable(engine, "alice-laptop", "router-eu"));
        Assert.True(engine.UsableRoutes("alice-laptop", "exit-us").ExitNode);
        Assert.False(engine.UsableRoutes("alice-laptop", "exit-eu").ExitNode);
        // The EU router's filter opens only itself (port 22) to alice, never the subnet; the US router's opens the subnet.
        Assert.DoesNotContain(engine.FilterOf("router-eu"), g => g.Sources.Contains("user:alice@example.com") && !g.Routed.IsDefaultOrEmpty);
        Assert.Contains(engine.FilterOf("router-us"), g => g.Sources.Contains("user:alice@example.com") && g.Routed.Contains("198.18.40.0/24"));
        // bob has no via: every router of the subnet may carry it.
        Assert.Equal(("198.18.40.0/24", false), Usable(engine, "bob-laptop", "router-eu"));
        Assert.Equal(("198.18.40.0/24", false), Usable(engine, "bob-laptop", "router-us"));
    }

    private static (string Routes, bool ExitNode) Usable(PolicyEngine engine, string viewer, string router)
    {
        var (routes, exitNode) = engine.UsableRoutes(viewer, router);
        return (string.Join(" ", routes), exitNode);
    }

    [Fact]
    public void A_subnet_as_source_makes_the_router_visible_to_the_destination_SUBNETS_snat_off()
    {
        var engine = PolicyEngine.Compile(WithNames("""
            "acls": [ { "action": "accept", "src": ["198.18.40.0/24"], "dst": ["tag:web:80"] } ],
            """), Devices);

        Assert.Equal(["exit", "router"], Sees(engine, Web)); // packets from the subnet come through the router (or, as internet, an exit node)
        Assert.Equal(["198.18.40.0/24"], Assert.Single(engine.FilterOf(Web.DeviceId)).Sources.ToArray());
    }

    [Fact]
    public void AutoApprovers_cover_their_prefix_and_every_narrower_route_SYNTAX_auto_approvers()
    {
        var policy = Valid("""
            {
              "groups": { "group:net": ["alice@example.com"] },
              "tagOwners": { "tag:router": [], "tag:exit": [] },
              "autoApprovers": {
                "routes": { "198.18.0.0/15": ["tag:router", "group:net"] },
                "exitNode": ["tag:exit"],
              },
            }
            """);
        var approvers = policy.AutoApprovers;

        Assert.True(approvers.ApprovesRoute(IPNetwork.Parse("198.18.40.0/24"), Router.Principal));
        Assert.True(approvers.ApprovesRoute(IPNetwork.Parse("198.19.0.0/16"), AliceLaptop.Principal));
        Assert.False(approvers.ApprovesRoute(IPNetwork.Parse("198.16.0.0/12"), Router.Principal)); // wider than the approved prefix
        Assert.False(approvers.ApprovesRoute(IPNetwork.Parse("198.18.40.0/24"), BobLaptop.Principal));
        Assert.True(approvers.ApprovesExitNode(Exit.Principal));
        Assert.False(approvers.ApprovesExitNode(Router.Principal));
    }

    [Theory]
    [InlineData("""{ "autoApprovers": { "routes": { "0.0.0.0/0": ["alice@example.com"] } } }""", "approve exit nodes with autoApprovers.exitNode")]
    [InlineData("""{ "autoApprovers": { "routes": { "198.18.40.0/24": ["198.18.0.1"] } } }""", "cannot approve routes")]
    [InlineData("""{ "autoApprovers": { "routes": { "198.18.40.1/24": ["alice@example.com"] } } }""", "is not a CIDR prefix")]
    [InlineData("""{ "autoApprovers": { "exitNode": ["tag:nobody"] } }""", "tag:nobody is not defined in tagOwners")]
    [InlineData("""{ "autoApprovers": { "services": {} } }""", "autoApprovers has routes and exitNode")]
    public void Malformed_autoApprovers_are_refused_with_a_reason(string text, string expected) =>
        Assert.Contains(expected, Refused(text).Message);

    [Fact]
    public void Tag_ownership_follows_tagOwners_users_groups_and_autogroup_member_SYNTAX_tag_owners()
    {
        var policy = Valid("""
            {
              "groups": { "group:ops": ["carol@example.com"] },
              "tagOwners": { "tag:a": ["alice@example.com"], "tag:b": ["group:ops"], "tag:c": ["autogroup:member"], "tag:d": [] },
            }
            """);

        Assert.True(TagOwnership.Owns(policy.TagOwners, policy.Groups, "ALICE@example.com", "tag:a"));
        Assert.False(TagOwnership.Owns(policy.TagOwners, policy.Groups, Bob, "tag:a"));
        Assert.True(TagOwnership.Owns(policy.TagOwners, policy.Groups, "carol@example.com", "tag:b"));
        Assert.True(TagOwnership.Owns(policy.TagOwners, policy.Groups, Bob, "tag:c"));
        Assert.False(TagOwnership.Owns(policy.TagOwners, policy.Groups, Alice, "tag:d")); // [] is admins only
        Assert.False(TagOwnership.Owns(policy.TagOwners, policy.Groups, Alice, "tag:undefined"));
    }

    [Theory]
    [InlineData("""{ "ssh": [] }""", "\"ssh\" is not supported yet by Weft")]
    [InlineData("""{ "nodeAttrs": [] }""", "\"nodeAttrs\" is not supported yet by Weft")]
    [InlineData("""{ "ipsets": {} }""", "\"ipsets\" is not supported yet by Weft")]
    [InlineData("""{ "OneCGNATRoute": "mullvad" }""", "\"OneCGNATRoute\" is not supported yet by Weft")]
    [InlineData("""{ "postures": {} }""", "\"postures\" is not supported yet by Weft")]
    [InlineData("""{ "acls": [ { "action": "accept", "src": ["autogroup:it-admin"], "dst": ["*:*"] } ] }""", "autogroup:it-admin is not supported yet by Weft")]
    [InlineData("""{ "acls": [ { "action": "accept", "src": ["ipset:office"], "dst": ["*:*"] } ] }""", "ipset: selectors are not supported yet")]
    [InlineData("""{ "acls": [ { "action": "accept", "src": ["svc:db"], "dst": ["*:*"] } ] }""", "svc: selectors are not supported yet")]
    [InlineData("""{ "acls": [ { "action": "accept", "src": ["user:*@example.com"], "dst": ["*:*"] } ] }""", "user: selectors are not supported yet")]
    [InlineData("""{ "acls": [ { "action": "accept", "src": ["*"], "srcPosture": [], "dst": ["*:*"] } ] }""", "\"srcPosture\" is not supported yet by Weft")]
    public void What_weft_does_not_support_is_refused_saying_so_README_not_supported_yet(string text, string expected) =>
        Assert.Contains(expected, Refused(text).Message);

    [Fact]
    public void A_stored_policy_with_tailscale_ssh_and_node_attributes_is_enforced_without_them_though_a_new_one_is_refused()
    {
        // A later version may accept these sections, which grant nothing here; a node of this version that holds
        // the tailnet (in a rolling upgrade, or after a rollback) must enforce the rest, not fail closed.
        const string text = """
            {
              // Everyone reaches everything.
              "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] } ],
              "ssh": [
                { "action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["autogroup:nonroot", "root"] },
              ],
              "nodeAttrs": [ { "target": ["autogroup:member"], "attr": ["funnel"] } ],
              "randomizeClientPort": true,
            }
            """;

        var stored = PolicyParser.Parse(text, stored: true);
        Assert.True(stored.IsValid, string.Join("\n", stored.Issues));
        Assert.Equal(["ssh", "nodeAttrs", "randomizeClientPort"], stored.Warnings.Select(w => w.Path));
        Assert.Contains("\"ssh\" is ignored: Weft has no Tailscale SSH server", stored.Warnings[0].Message);
        Assert.Equal(4, stored.Warnings[0].Line);
        Assert.Equal(Sees(PolicyEngine.Compile(Valid("""{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] } ] }"""), Devices), Web),
            Sees(PolicyEngine.Compile(stored.Policy!, Devices), Web));

        Assert.Contains("\"ssh\" is not supported yet by Weft", Refused(text).Message);
        var other = PolicyParser.Parse("""{ "postures": {} }""", stored: true); // what restricts access is never read past
        Assert.Null(other.Policy);
    }

    [Fact]
    public void The_legacy_autogroup_members_means_autogroup_member_SYNTAX()
    {
        var legacy = PolicyEngine.Compile(Valid("""{ "acls": [ { "action": "accept", "src": ["autogroup:members"], "dst": ["tag:web:80"] } ], "tagOwners": { "tag:web": [] } }"""), Devices);
        var current = PolicyEngine.Compile(Valid("""{ "acls": [ { "action": "accept", "src": ["autogroup:member"], "dst": ["tag:web:80"] } ], "tagOwners": { "tag:web": [] } }"""), Devices);
        Assert.Equal(Sees(current, Web), Sees(legacy, Web));
        Assert.Equal(["alice-laptop", "bob-laptop"], Sees(legacy, Web));
    }

    [Fact]
    public void The_legacy_action_allow_is_accepted_as_accept_SYNTAX() =>
        Valid("""{ "acls": [ { "action": "allow", "src": ["*"], "dst": ["*:*"] } ] }""");

    [Fact]
    public void Route_prefix_arithmetic()
    {
        Assert.Equal(IPNetwork.Parse("198.18.40.0/25"), Routing.Overlap(IPNetwork.Parse("198.18.40.0/24"), IPNetwork.Parse("198.18.40.0/25")));
        Assert.Null(Routing.Overlap(IPNetwork.Parse("198.18.40.0/24"), IPNetwork.Parse("198.18.41.0/24")));
        Assert.Null(Routing.Overlap(IPNetwork.Parse("198.18.40.0/24"), IPNetwork.Parse("::/0")));
        var pieces = Routing.Subtract(IPNetwork.Parse("0.0.0.0/0"), [IPNetwork.Parse("10.0.0.0/8")]).ToImmutableArray();
        Assert.Equal(8, pieces.Length); // 0/5, 8/7 … 128/1 around 10/8
        Assert.DoesNotContain(pieces, p => p.Contains(IPAddress.Parse("10.9.9.9")));
        Assert.All(new[] { "0.0.0.1", "9.255.255.255", "11.0.0.0", "255.255.255.255" }, a => Assert.Contains(pieces, p => p.Contains(IPAddress.Parse(a))));
    }
}
