using Weft.Cluster.Persistence;
using Weft.Cluster.Policy;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;
using Weft.Contracts.Control;

using static Weft.Cluster.Tests.Tailnets.TailnetDecisions;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>
/// The pure rules of routes (advertised by agents, approved by admins or autoApprovers) and of tag
/// ownership (a tag exists once tagOwners defines it; a key for a user carries only that user's tags).
/// </summary>
public class TailnetRoutesTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 1, 12, 0, 0, TimeSpan.Zero);
    private const string T = "tn_acme";

    private const string Policy = """
        {
          "groups": { "group:net": ["alice@example.com"] },
          "tagOwners": { "tag:router": ["group:net"], "tag:exit": [], "tag:web": ["bob@example.com"] },
          "autoApprovers": {
            "routes": { "198.18.0.0/15": ["tag:router"] },
            "exitNode": ["tag:exit"],
          },
        }
        """;

    /// <summary>A tailnet with the policy above, users alice and bob, and devices: "router" (tag:router), "exit" (tag:exit), "laptop" (alice).</summary>
    private static TailnetState Tailnet()
    {
        var state = TailnetState.Unborn(T).Apply(new TailnetCreated(TailnetRules.DefaultSettings("acme"), Now));
        state = Run(state, new SetPolicy(T, Policy, Now));
        state = Run(state, new CreateUser(T, "usr_alice", "alice@example.com", Now));
        state = Run(state, new CreateUser(T, "usr_bob", "bob@example.com", Now));
        state = Run(state, new CreateAuthKey(T, "k_router", "h1", null, true, false, ["tag:router"], Now.AddDays(1), "", Now));
        state = Run(state, new CreateAuthKey(T, "k_exit", "h2", null, true, false, ["tag:exit"], Now.AddDays(1), "", Now));
        state = Run(state, new CreateAuthKey(T, "k_alice", "h3", "usr_alice", true, false, [], Now.AddDays(1), "", Now));
        foreach (var (id, key, hash, c) in new[] { ("router", "k_router", "h1", 'a'), ("exit", "k_exit", "h2", 'b'), ("laptop", "k_alice", "h3", 'c') })
            state = Run(state, new RegisterDevice(T, id, new string(c, 64), new string((char)(c + 3), 64), "", id, "linux", key, hash, Now));
        return state;
    }

    [Fact]
    public void Routes_that_autoApprovers_cover_are_approved_when_advertised_and_others_wait_for_an_admin()
    {
        var state = Run(Tailnet(), new AdvertiseDeviceRoutes(T, "router", ["198.18.40.0/24", "203.0.113.0/24"]));
        var router = state.Devices["router"];

        Assert.Equal(["198.18.40.0/24", "203.0.113.0/24"], router.AdvertisedRoutes.ToArray());
        Assert.Equal(["198.18.40.0/24"], router.ApprovedRoutes.ToArray());         // covered by 198.18.0.0/15
        Assert.Equal(["198.18.40.0/24"], router.EnabledRoutes.ToArray());
        Assert.False(router.IsExitNode);

        state = Run(state, new ApproveDeviceRoutes(T, "router", ["198.18.40.0/24", "203.0.113.0/24"]));
        Assert.Equal(["198.18.40.0/24", "203.0.113.0/24"], state.Devices["router"].EnabledRoutes.ToArray());
        var principal = state.PolicyDeviceOf(state.Devices["router"]).Principal;
        Assert.Equal(2, principal.SubnetRoutes.Length);

        // Withdrawn by the agent: no longer in force, but still approved if it comes back (as Tailscale).
        state = Run(state, new AdvertiseDeviceRoutes(T, "router", ["203.0.113.0/24"]));
        Assert.Equal(["203.0.113.0/24"], state.Devices["router"].EnabledRoutes.ToArray());
        Assert.Equal(2, state.Devices["router"].ApprovedRoutes.Length);
    }

    [Fact]
    public void An_exit_node_is_approved_by_autoApprovers_exitNode_or_an_admin_and_needs_both_exit_routes()
    {
        var state = Run(Tailnet(), new AdvertiseDeviceRoutes(T, "exit", ["0.0.0.0/0", "::/0"]));
        Assert.True(state.Devices["exit"].IsExitNode);
        Assert.True(state.PolicyDeviceOf(state.Devices["exit"]).ExitNode);

        // The router is not in autoApprovers.exitNode: it waits for an admin, who approves both routes together.
        state = Run(state, new AdvertiseDeviceRoutes(T, "router", ["0.0.0.0/0", "::/0"]));
        Assert.False(state.Devices["router"].IsExitNode);
        Assert.Contains("give both, or neither", Refused(state, new ApproveDeviceRoutes(T, "router", ["0.0.0.0/0"])).Message);
        state = Run(state, new ApproveDeviceRoutes(T, "router", ["0.0.0.0/0", "::/0"]));
        Assert.True(state.Devices["router"].IsExitNode);
        Assert.Contains("give both, or neither", Refused(state, new AdvertiseDeviceRoutes(T, "laptop", ["::/0"])).Message);
    }

    [Theory]
    [InlineData("198.18.40.1/24", "is not a CIDR prefix")]
    [InlineData("198.18.40", "is not a CIDR prefix")]
    [InlineData("100.64.0.0/16", "overlaps the tailnet's own addresses")]
    [InlineData("100.0.0.0/8", "overlaps the tailnet's own addresses")]
    [InlineData("fd7a:115c:a1e0:ab12::/64", "overlaps the tailnet's own addresses")]
    public void Malformed_routes_are_refused_with_a_reason(string route, string expected)
    {
        var state = Tailnet();
        Assert.Contains(expected, Refused(state, new AdvertiseDeviceRoutes(T, "router", [route])).Message);
    }

    [Fact]
    public void Only_advertised_routes_may_be_approved()
    {
        var state = Tailnet();
        var refused = Refused(state, new ApproveDeviceRoutes(T, "laptop", ["198.18.40.0/24"]));
        Assert.Equal(ApiErrorCodes.InvalidRequest, refused.Code);
        Assert.Contains("does not advertise 198.18.40.0/24; it advertises no routes", refused.Message);
    }

    [Fact]
    public void A_tag_must_be_defined_in_tagOwners_before_a_key_or_a_device_carries_it()
    {
        var state = Tailnet();
        var key = Refused(state, new CreateAuthKey(T, "k_x", "hx", null, false, false, ["tag:db"], Now.AddDays(1), "", Now));
        Assert.Contains("tag:db is not defined in the policy's tagOwners", key.Message);
        var tags = Refused(state, new SetDeviceTags(T, "laptop", ["tag:db"], Now));
        Assert.Contains("tag:db is not defined in the policy's tagOwners", tags.Message);

        // An admin may apply any defined tag, even one with owners "[]" (admins only).
        state = Run(state, new SetDeviceTags(T, "laptop", ["tag:exit"], Now));
        Assert.Equal(["tag:exit"], state.Devices["laptop"].Tags.ToArray());
    }

    [Fact]
    public void A_key_made_for_a_user_carries_only_tags_that_user_owns()
    {
        var state = Tailnet();
        // alice owns tag:router through group:net; bob owns tag:web by name; nobody but admins owns tag:exit.
        Run(state, new CreateAuthKey(T, "k_a", "ha", "usr_alice", false, false, ["tag:router"], Now.AddDays(1), "", Now));
        Run(state, new CreateAuthKey(T, "k_b", "hb", "usr_bob", false, false, ["tag:web"], Now.AddDays(1), "", Now));
        var refused = Refused(state, new CreateAuthKey(T, "k_c", "hc", "usr_bob", false, false, ["tag:router"], Now.AddDays(1), "", Now));
        Assert.Contains("bob@example.com does not own tag:router: the policy's tagOwners gives it to group:net", refused.Message);
        Assert.Contains("admins only", Refused(state, new CreateAuthKey(T, "k_d", "hd", "usr_alice", false, false, ["tag:exit"], Now.AddDays(1), "", Now)).Message);
        // Without a user the key is the admin's: any defined tag.
        Run(state, new CreateAuthKey(T, "k_e", "he", null, false, false, ["tag:exit", "tag:web"], Now.AddDays(1), "", Now));
    }

    [Fact]
    public void Routes_waiting_for_approval_are_approved_when_a_policy_edit_or_a_new_tag_brings_an_autoApprover_that_covers_them()
    {
        var state = Run(Tailnet(), new AdvertiseDeviceRoutes(T, "router", ["198.18.40.0/24", "203.0.113.0/24"]));
        state = Run(state, new AdvertiseDeviceRoutes(T, "laptop", ["198.18.50.0/24"]));
        Assert.Equal(["198.18.40.0/24"], state.Devices["router"].ApprovedRoutes.ToArray());
        Assert.Empty(state.Devices["laptop"].ApprovedRoutes);

        // The edit that names 203.0.113.0/24 approves it for the router that waits with it; re-advertising was the only other way.
        state = Run(state, new SetPolicy(T, Policy.Replace("\"198.18.0.0/15\": [\"tag:router\"]", "\"198.18.0.0/15\": [\"tag:router\"], \"203.0.113.0/24\": [\"tag:router\"]"), Now));
        Assert.Equal(["198.18.40.0/24", "203.0.113.0/24"], state.Devices["router"].EnabledRoutes.ToArray());
        Assert.Empty(state.Devices["laptop"].ApprovedRoutes); // alice's laptop is not tag:router

        // Tagged tag:router by an admin, the laptop's waiting route is the approvers' to approve now.
        state = Run(state, new SetDeviceTags(T, "laptop", ["tag:router"], Now));
        Assert.Equal(["198.18.50.0/24"], state.Devices["laptop"].EnabledRoutes.ToArray());
    }

    [Fact]
    public void A_key_whose_tag_the_policy_no_longer_defines_or_gives_its_user_registers_nothing()
    {
        var state = Tailnet();
        state = Run(state, new CreateAuthKey(T, "k_net", "hn", "usr_alice", true, false, ["tag:router"], Now.AddDays(1), "", Now));
        state = Run(state, new CreateAuthKey(T, "k_web", "hw", null, true, false, ["tag:web"], Now.AddDays(1), "", Now));
        RegisterDevice Join(string key, string hash, char c) => new(T, $"dev_{c}", new string(c, 64), new string((char)(c + 1), 64), "", $"d{c}", "linux", key, hash, Now);
        Run(state, Join("k_net", "hn", 'm'));

        // alice leaves group:net, and tag:web goes from the policy.
        state = Run(state, new SetPolicy(T, Policy.Replace("\"group:net\": [\"alice@example.com\"]", "\"group:net\": []").Replace(", \"tag:web\": [\"bob@example.com\"]", ""), Now));

        var notOwned = Refused(state, Join("k_net", "hn", 'p'));
        Assert.Equal(ControlErrorCodes.AuthKeyTagsNotPermitted, notOwned.Code);
        Assert.Contains("made for alice@example.com, who no longer owns tag:router", notOwned.Message);
        var undefined = Refused(state, Join("k_web", "hw", 'r'));
        Assert.Equal(ControlErrorCodes.AuthKeyTagsNotPermitted, undefined.Code);
        Assert.Contains("carries tag:web, which the policy's tagOwners no longer defines", undefined.Message);
        // A key made by an admin alone still gives any tag that is defined.
        Run(state, Join("k_router", "h1", 't'));
    }

    [Fact]
    public void Enabled_routes_make_the_device_a_subnet_router_and_an_exit_node_to_the_policy()
    {
        var state = Run(Tailnet(), new AdvertiseDeviceRoutes(T, "router", ["198.18.40.0/24", "0.0.0.0/0", "::/0"]));
        state = Run(state, new ApproveDeviceRoutes(T, "router", ["0.0.0.0/0", "198.18.40.0/24", "::/0"]));
        var engine = PolicyEngine.Compile(state.Policy, state.PolicyDevices());
        var router = state.PolicyDeviceOf(state.Devices["router"]);

        Assert.True(router.ExitNode);
        Assert.Equal(["198.18.40.0/24"], router.SubnetRoutes.Select(r => r.ToString()).ToArray());
        Assert.Contains("router", engine.VisiblePeers("laptop")); // the policy has no acls: everything is allowed
    }
}
