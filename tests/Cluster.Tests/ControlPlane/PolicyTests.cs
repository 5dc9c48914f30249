using System.Net;
using System.Text;
using Akka.Actor;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;
using Weft.Contracts.Control;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Filter;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>Policies end to end: the admin API, a real coordinator, and agents whose netmaps and filters follow.</summary>
public class PolicyTests(SharedCoordinator coordinator) : IClassFixture<SharedCoordinator>
{
    private HttpClient Http => coordinator.Http;

    private const string Restrictive = """
        // alice may reach the web servers on 443; db servers may reach them on 5432.
        {
          "tagOwners": { "tag:web": [], "tag:db": [] },
          "acls": [
            { "action": "accept", "src": ["alice@example.com"], "dst": ["tag:web:443"] },
            { "action": "accept", "src": ["tag:db"], "dst": ["tag:web:5432"] },
          ],
          "tests": [
            { "src": "alice@example.com", "accept": ["tag:web:443"], "deny": ["tag:web:22"] },
            { "src": "bob@example.com", "deny": ["tag:web:443"] },
          ],
        }
        """;

    private static StringContent HuJson(string text) => new(text, Encoding.UTF8, "application/hujson");

    private async Task<(string Tailnet, TestAgent Alice, TestAgent Bob, TestAgent Web)> ThreeDevices(AgentSystem agents)
    {
        var tailnet = await coordinator.NewTailnet("policy");
        // Everyone may reach everyone (the default), with the tags defined: a tag exists once tagOwners names it.
        await Http.DefineTags(tailnet, "tag:web", "tag:db");
        foreach (var user in new[] { "alice@example.com", "bob@example.com" })
            await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/users", new { name = user })).ReadAs<UserResource>(HttpStatusCode.Created);
        var alice = TestAgent.Start(agents, coordinator.Control, "alice", (await Http.CreateAuthKey(tailnet, user: "alice@example.com")).Key);
        var bob = TestAgent.Start(agents, coordinator.Control, "bob", (await Http.CreateAuthKey(tailnet, user: "bob@example.com")).Key);
        var web = TestAgent.Start(agents, coordinator.Control, "web", (await Http.CreateAuthKey(tailnet, tags: ["tag:web"])).Key);
        await alice.WaitForPeers(bob, web);
        await bob.WaitForPeers(alice, web);
        await web.WaitForPeers(alice, bob);
        return (tailnet, alice, bob, web);
    }

    private static bool WebAccepts(NetMapView webView, TestAgent from, int port)
    {
        var filter = TrafficFilter.Compile(webView.Filter, webView.Peers.Values);
        var source = from.View.Self!.Addresses[0];
        var packet = Support.Packets.Tcp4(source, webView.Self!.Addresses[0], 40000, port);
        Assert.True(IpPacket.TryRead(packet, out var parsed));
        return filter.AllowsInbound(parsed, new FlowTracker(), 1);
    }

    [Fact]
    public async Task A_policy_change_removes_peers_and_updates_filters_and_a_later_tag_gains_access()
    {
        await using var agents = new AgentSystem();
        var (tailnet, alice, bob, web) = await ThreeDevices(agents);
        var defaultView = web.View;
        Assert.True(WebAccepts(defaultView, bob, 22)); // the default policy: all may reach all

        var applied = await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", HuJson(Restrictive))).ReadAs<PolicyResource>(HttpStatusCode.OK);
        Assert.Equal(3, applied.Version); // 2 defined the tags

        await bob.WaitForNetMap(v => v.Peers.IsEmpty, "no peers under the new policy");
        await alice.WaitForPeers(web);
        var webView = await web.WaitForPeers(alice);
        webView = await web.WaitForNetMap(v => v.Filter.Rules.Count == 2, "its new filter");
        Assert.Contains(webView.Filter.Rules, r => r.Sources.SequenceEqual(["user:alice@example.com"]) && r.Ports.Single().First == 443);
        Assert.True(WebAccepts(webView, alice, 443));
        Assert.False(WebAccepts(webView, alice, 22));
        Assert.False(WebAccepts(webView, bob, 443));
        Assert.Empty(bob.View.Filter.Rules); // nothing may reach bob any more

        // bob's device is tagged tag:db later: web now sees it and its filter lets it in on 5432 —
        // without a new filter for web, which already names tag:db.
        var filtersBefore = web.Received.Count(m => m.Delta?.Filter is not null);
        await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/{bob.DeviceId}/tags", new { tags = new[] { "tag:db" } })).ReadAs<DeviceResource>(HttpStatusCode.OK);
        webView = await web.WaitForPeers(alice, bob);
        Assert.True(WebAccepts(webView, bob, 5432));
        Assert.False(WebAccepts(webView, bob, 443));
        await bob.WaitForPeers(web);
        Assert.Equal(filtersBefore, web.Received.Count(m => m.Delta?.Filter is not null));

        // And loses it when the tag goes.
        await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/{bob.DeviceId}/tags", new { tags = Array.Empty<string>() })).ReadAs<DeviceResource>(HttpStatusCode.OK);
        await web.WaitForPeers(alice);
        await bob.WaitForNetMap(v => v.Peers.IsEmpty, "no peers again");
    }

    [Fact]
    public async Task A_refused_policy_lists_its_problems_and_leaves_the_old_one_in_force()
    {
        await using var agents = new AgentSystem();
        var (tailnet, _, bob, _) = await ThreeDevices(agents);
        await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", HuJson(Restrictive))).ReadAs<PolicyResource>(HttpStatusCode.OK);
        var before = await Http.GetAsync($"/api/v1/tailnets/{tailnet}/policy");
        var textBefore = await before.Content.ReadAsStringAsync();

        // A test that fails (bob is denied) and a group nobody defined.
        var broken = Restrictive.Replace("\"deny\": [\"tag:web:443\"]", "\"accept\": [\"tag:web:443\"]").Replace("\"src\": [\"tag:db\"]", "\"src\": [\"group:nope\"]");
        var refused = await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", HuJson(broken))).ReadError(HttpStatusCode.BadRequest);

        Assert.Equal(ApiErrorCodes.PolicyInvalid, refused.Code);
        var issue = Assert.Single(refused.Issues!);
        Assert.Contains("group:nope is not defined", issue.Message);
        Assert.Equal((6, 35), (issue.Line, issue.Column));
        var failingTest = Restrictive.Replace("\"deny\": [\"tag:web:443\"]", "\"accept\": [\"tag:web:443\"]");
        var testFailure = await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", HuJson(failingTest))).ReadError(HttpStatusCode.BadRequest);
        Assert.Contains("expected bob@example.com → tag:web:443 to be accepted", Assert.Single(testFailure.Issues!).Message);
        var syntax = await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", HuJson("{ \"acls\": [ }"))).ReadError(HttpStatusCode.BadRequest);
        Assert.Equal((1, 13), (syntax.Issues![0].Line, syntax.Issues[0].Column));

        var after = await Http.GetAsync($"/api/v1/tailnets/{tailnet}/policy");
        Assert.Equal(textBefore, await after.Content.ReadAsStringAsync());
        Assert.Equal(before.Headers.ETag, after.Headers.ETag);
        Assert.Equal("\"3\"", after.Headers.ETag!.Tag);
        await bob.WaitForNetMap(v => v.Peers.IsEmpty, "still no peers under the old policy");
    }

    [Fact]
    public async Task A_policy_whose_tests_would_take_minutes_is_refused_at_once_and_the_tailnet_keeps_answering()
    {
        var tailnet = await coordinator.NewTailnet("costly-tests");
        // 1,000 users in a group, 90 rules, and one test from the group to 60 destinations:
        // 5,400,000 rule evaluations, more than one policy may take (the rules alone are within their limit).
        var users = string.Join(", ", Enumerable.Range(0, 1000).Select(i => $"\"u{i}@example.com\""));
        var rules = string.Join(",\n", Enumerable.Range(0, 90).Select(i => $"{{ \"action\": \"accept\", \"src\": [\"group:many\"], \"dst\": [\"tag:t{i}:{1000 + i}\"] }}"));
        var accepts = string.Join(", ", Enumerable.Range(0, 60).Select(i => $"\"tag:t{i}:{1000 + i}\""));
        var owners = string.Join(", ", Enumerable.Range(0, 90).Select(i => $"\"tag:t{i}\": []"));
        var costly = $"{{ \"groups\": {{ \"group:many\": [{users}] }}, \"tagOwners\": {{ {owners} }}, \"acls\": [{rules}], \"tests\": [{{ \"src\": \"group:many\", \"accept\": [{accepts}] }}] }}";

        var refused = await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", HuJson(costly))).ReadError(HttpStatusCode.BadRequest);

        Assert.Equal(ApiErrorCodes.PolicyInvalid, refused.Code);
        Assert.Contains("rule evaluations, the most one policy may take", Assert.Single(refused.Issues!).Message);
        Assert.Equal("\"1\"", (await Http.GetAsync($"/api/v1/tailnets/{tailnet}/policy")).Headers.ETag!.Tag); // the default is still in force
        // The same policy without its tests is fine: the cost was the tests'.
        var withoutTests = costly[..costly.LastIndexOf(", \"tests\"", StringComparison.Ordinal)] + " }";
        Assert.Equal(2, (await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", HuJson(withoutTests))).ReadAs<PolicyResource>(HttpStatusCode.OK)).Version);
    }

    [Fact]
    public async Task Validate_and_test_answer_without_changing_anything()
    {
        var tailnet = await coordinator.NewTailnet("policy-check");
        var validated = await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy/validate", HuJson(Restrictive))).ReadAs<PolicyValidationResource>(HttpStatusCode.OK);
        Assert.Equal((true, 2, 2), (validated.Valid, validated.Rules, validated.Tests));
        var invalid = await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy/validate", HuJson("{ \"acls\": 3 }"))).ReadError(HttpStatusCode.BadRequest);
        Assert.Equal(ApiErrorCodes.PolicyInvalid, invalid.Code);

        // The live policy is still the default: everything is allowed.
        var defaultAnswer = await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/policy/test", new { src = "bob@example.com", dst = "tag:web:22" })).ReadAs<AccessCheckResource>(HttpStatusCode.OK);
        Assert.True(defaultAnswer.Allowed);
        await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", HuJson(Restrictive))).ReadAs<PolicyResource>(HttpStatusCode.OK);
        var denied = await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/policy/test", new { src = "bob@example.com", dst = "tag:web:443" })).ReadAs<AccessCheckResource>(HttpStatusCode.OK);
        Assert.False(denied.Allowed);
        var allowed = await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/policy/test", new { src = "alice@example.com", dst = "tag:web:443", proto = "tcp" })).ReadAs<AccessCheckResource>(HttpStatusCode.OK);
        Assert.Equal((true, 0), (allowed.Allowed, allowed.Rule));
        var malformed = await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/policy/test", new { src = "alice@example.com", dst = "tag:web" })).ReadError(HttpStatusCode.BadRequest);
        Assert.Contains("target:port", malformed.Message);

        var text = await Http.GetStringAsync($"/api/v1/tailnets/{tailnet}/policy");
        Assert.Equal(Restrictive, text);
    }

    [Fact]
    public async Task A_new_tailnet_starts_with_the_allow_all_policy_and_oversized_policies_are_refused()
    {
        var tailnet = await coordinator.NewTailnet("policy-default");
        var response = await Http.GetAsync($"/api/v1/tailnets/{tailnet}/policy");
        Assert.Equal("application/hujson", response.Content.Headers.ContentType!.MediaType);
        Assert.Contains("\"dst\": [\"*:*\"]", await response.Content.ReadAsStringAsync());
        Assert.Equal("\"1\"", response.Headers.ETag!.Tag);

        var huge = "{ \"acls\": [] }" + new string(' ', Weft.Cluster.Policy.HuJson.MaxLength);
        var refused = await Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", HuJson(huge));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, refused.StatusCode);
    }

    [Fact]
    public async Task A_tenant_key_gets_404_for_another_tailnets_policy()
    {
        var mine = await coordinator.NewTailnet("policy-mine");
        var theirs = await coordinator.NewTailnet("policy-theirs");
        var issued = await (await Http.PostJson("/api/v1/api-keys", new { scope = "tailnet", tailnet = mine })).ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);
        using var tenant = TestCoordinator.NewClient(coordinator.Node.Api, issued.Key);

        Assert.Equal(HttpStatusCode.OK, (await tenant.GetAsync($"/api/v1/tailnets/{mine}/policy")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await tenant.GetAsync($"/api/v1/tailnets/{theirs}/policy")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await tenant.PostAsync($"/api/v1/tailnets/{theirs}/policy", HuJson("{ \"acls\": [] }"))).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await tenant.PostJson($"/api/v1/tailnets/{theirs}/policy/test", new { src = "a@b.c", dst = "1.2.3.4:1" })).StatusCode);
        Assert.Contains("\"*:*\"", await Http.GetStringAsync($"/api/v1/tailnets/{theirs}/policy")); // untouched
    }
}
