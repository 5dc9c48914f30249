using System.Net;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;
using Weft.NodeAgent.Control;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>A tenant's API key administers its own tailnet; every other tailnet does not exist for it.</summary>
public class TenantIsolationTests(SharedCoordinator coordinator) : IClassFixture<SharedCoordinator>
{
    private HttpClient Operator => coordinator.Http;

    private async Task<(HttpClient Tenant, string Mine, string Theirs, string TheirDevice, string TheirKeyId)> TwoTenants(AgentSystem agents)
    {
        var mine = await coordinator.NewTailnet("mine");
        var theirs = await coordinator.NewTailnet("theirs");
        var issued = await (await Operator.PostJson("/api/v1/api-keys", new { scope = "tailnet", tailnet = mine, description = "tenant admin" }))
            .ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);
        Assert.Equal("tailnet", issued.ApiKey.Scope);
        Assert.Equal(mine, issued.ApiKey.Tailnet);
        var theirKey = await Operator.CreateAuthKey(theirs);
        var device = TestAgent.Start(agents, coordinator.Control, "their-box", theirKey.Key);
        await device.WaitForState(ControlState.Running);
        return (TestCoordinator.NewClient(coordinator.Node.Api, issued.Key), mine, theirs, device.DeviceId!, theirKey.AuthKey.Id);
    }

    [Fact]
    public async Task A_tenant_key_gets_404_for_everything_of_another_tailnet()
    {
        await using var agents = new AgentSystem();
        var (tenant, _, theirs, theirDevice, theirKeyId) = await TwoTenants(agents);
        using var _ = tenant;
        var before = await Operator.DevicesSnapshot(theirs);
        var missing = $"nope-{Guid.NewGuid():N}"[..20];

        var probes = new (HttpMethod Method, string Path, object? Body)[]
        {
            (HttpMethod.Get, $"/api/v1/tailnets/{theirs}", null),
            (HttpMethod.Patch, $"/api/v1/tailnets/{theirs}", new { dnsSuffix = "stolen.example.com" }),
            (HttpMethod.Get, $"/api/v1/tailnets/{theirs}/devices", null),
            (HttpMethod.Get, $"/api/v1/tailnets/{theirs}/devices/{theirDevice}", null),
            (HttpMethod.Get, $"/api/v1/tailnets/{theirs}/devices/{theirDevice}/netmap", null),
            (HttpMethod.Post, $"/api/v1/tailnets/{theirs}/devices/{theirDevice}/expire", null),
            (HttpMethod.Delete, $"/api/v1/tailnets/{theirs}/devices/{theirDevice}", null),
            (HttpMethod.Get, $"/api/v1/tailnets/{theirs}/users", null),
            (HttpMethod.Post, $"/api/v1/tailnets/{theirs}/users", new { name = "mallory" }),
            (HttpMethod.Get, $"/api/v1/tailnets/{theirs}/auth-keys", null),
            (HttpMethod.Post, $"/api/v1/tailnets/{theirs}/auth-keys", new { reusable = true }),
            (HttpMethod.Delete, $"/api/v1/tailnets/{theirs}/auth-keys/{theirKeyId}", null),
            (HttpMethod.Post, "/api/v1/api-keys", new { scope = "tailnet", tailnet = theirs }),
        };
        foreach (var (method, path, body) in probes)
        {
            var request = new HttpRequestMessage(method, path);
            if (body is not null) request.Content = System.Net.Http.Json.JsonContent.Create(body, options: AdminJson.Options);
            var error = await (await tenant.SendAsync(request)).ReadError(HttpStatusCode.NotFound);
            Assert.Equal(ApiErrorCodes.NotFound, error.Code);
        }

        // The answer for another tenant's tailnet is word for word the answer for no tailnet at all.
        var real = await (await tenant.GetAsync($"/api/v1/tailnets/{theirs}")).ReadError(HttpStatusCode.NotFound);
        var none = await (await tenant.GetAsync($"/api/v1/tailnets/{missing}")).ReadError(HttpStatusCode.NotFound);
        Assert.Equal(none.Message.Replace(missing, "X"), real.Message.Replace(theirs, "X"));

        Assert.Equal(before, await Operator.DevicesSnapshot(theirs));
        Assert.Equal("theirs", (await Operator.GetTailnet(theirs)).Name[..6]);
    }

    [Fact]
    public async Task A_tenant_key_administers_its_own_tailnet_and_lists_only_it()
    {
        await using var agents = new AgentSystem();
        var (tenant, mine, theirs, _, _) = await TwoTenants(agents);
        using var _ = tenant;

        var listing = await tenant.ListTailnets();
        Assert.Equal(mine, Assert.Single(listing.Tailnets).Id);
        Assert.Equal(mine, (await tenant.GetTailnet(mine)).Id);
        await tenant.DefineTags(mine, "tag:ci");
        var key = await tenant.CreateAuthKey(mine, tags: ["tag:ci"]);
        var device = TestAgent.Start(agents, coordinator.Control, "mine-box", key.Key);
        await device.WaitForState(ControlState.Running);
        Assert.Single((await tenant.ListDevices(mine)).Devices);

        // Operator-only actions are forbidden, not hidden: the tenant knows its own tailnet exists.
        Assert.Equal(ApiErrorCodes.Forbidden, (await (await tenant.PostJson("/api/v1/tailnets", new { name = "another" })).ReadError(HttpStatusCode.Forbidden)).Code);
        Assert.Equal(ApiErrorCodes.Forbidden, (await (await tenant.DeleteAsync($"/api/v1/tailnets/{mine}")).ReadError(HttpStatusCode.Forbidden)).Code);
        Assert.Equal(ApiErrorCodes.Forbidden, (await (await tenant.PostJson("/api/v1/api-keys", new { scope = "operator" })).ReadError(HttpStatusCode.Forbidden)).Code);

        // Its API-key listing holds only its own tailnet's keys.
        var keys = await (await tenant.GetAsync("/api/v1/api-keys")).ReadAs<ApiKeyListResource>(HttpStatusCode.OK);
        Assert.All(keys.ApiKeys, k => Assert.Equal(mine, k.Tailnet));
        Assert.DoesNotContain(keys.ApiKeys, k => k.Tailnet == theirs || k.Scope == "operator");
    }

    [Fact]
    public async Task Tags_a_tenant_gives_its_own_devices_grant_nothing_in_another_tailnet_or_in_the_api()
    {
        await using var agents = new AgentSystem();
        var (tenant, mine, theirs, theirDevice, _) = await TwoTenants(agents);
        using var _ = tenant;
        // In their tailnet, tag:admin may reach everything.
        const string theirPolicy = """{ "tagOwners": { "tag:admin": [] }, "acls": [ { "action": "accept", "src": ["tag:admin"], "dst": ["*:*"] } ] }""";
        await (await Operator.PostAsync($"/api/v1/tailnets/{theirs}/policy",
            new StringContent(theirPolicy, System.Text.Encoding.UTF8, "application/hujson"))).ReadAs<PolicyResource>(HttpStatusCode.OK);

        // The tenant makes its own device tag:admin, by auth key and by the tags call.
        await tenant.DefineTags(mine, "tag:admin", "tag:prod");
        var key = await tenant.CreateAuthKey(mine, tags: ["tag:admin"]);
        var admin = TestAgent.Start(agents, coordinator.Control, "mine-admin", key.Key);
        await admin.WaitForState(ControlState.Running);
        await (await tenant.PostJson($"/api/v1/tailnets/{mine}/devices/{admin.DeviceId}/tags", new { tags = new[] { "tag:admin", "tag:prod" } }))
            .ReadAs<DeviceResource>(HttpStatusCode.OK);

        // Nothing crosses: their device's netmap has no peer of the tenant's, and the other way round.
        var theirMap = await (await Operator.GetAsync($"/api/v1/tailnets/{theirs}/devices/{theirDevice}/netmap")).Content.ReadAsStringAsync();
        Assert.DoesNotContain(admin.DeviceId!, theirMap);
        Assert.DoesNotContain(theirDevice, admin.View.Peers.Keys);
        // Nor in the API: the key is still a tailnet key of one tailnet.
        Assert.Equal(mine, Assert.Single((await tenant.ListTailnets()).Tailnets).Id);
        Assert.Equal(ApiErrorCodes.NotFound, (await (await tenant.PostJson($"/api/v1/tailnets/{theirs}/devices/{theirDevice}/tags", new { tags = new[] { "tag:admin" } }))
            .ReadError(HttpStatusCode.NotFound)).Code);
        Assert.Equal(ApiErrorCodes.Forbidden, (await (await tenant.PostJson("/api/v1/api-keys", new { scope = "operator" })).ReadError(HttpStatusCode.Forbidden)).Code);
        Assert.Equal(ApiErrorCodes.NotFound, (await (await tenant.PostJson("/api/v1/api-keys", new { scope = "tailnet", tailnet = theirs })).ReadError(HttpStatusCode.NotFound)).Code);
    }

    [Fact]
    public async Task A_revoked_tenant_key_stops_working()
    {
        var mine = await coordinator.NewTailnet("revoke");
        var issued = await (await Operator.PostJson("/api/v1/api-keys", new { scope = "tailnet", tailnet = mine }))
            .ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);
        using var tenant = TestCoordinator.NewClient(coordinator.Node.Api, issued.Key);
        Assert.Equal(mine, (await tenant.GetTailnet(mine)).Id);

        Assert.Equal(HttpStatusCode.NoContent, (await Operator.DeleteAsync($"/api/v1/api-keys/{issued.ApiKey.Id}")).StatusCode);

        Assert.Equal(ApiErrorCodes.Unauthorized, (await (await tenant.GetAsync($"/api/v1/tailnets/{mine}")).ReadError(HttpStatusCode.Unauthorized)).Code);
    }

    [Fact]
    public async Task Deleting_a_tailnet_revokes_its_tenant_keys()
    {
        var doomed = await coordinator.NewTailnet("doomed");
        var other = await coordinator.NewTailnet("survivor");
        var issued = await (await Operator.PostJson("/api/v1/api-keys", new { scope = "tailnet", tailnet = doomed }))
            .ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);
        var kept = await (await Operator.PostJson("/api/v1/api-keys", new { scope = "tailnet", tailnet = other }))
            .ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);
        using var tenant = TestCoordinator.NewClient(coordinator.Node.Api, issued.Key);
        using var otherTenant = TestCoordinator.NewClient(coordinator.Node.Api, kept.Key);
        Assert.Equal(doomed, (await tenant.GetTailnet(doomed)).Id);

        Assert.Equal(HttpStatusCode.NoContent, (await Operator.DeleteAsync($"/api/v1/tailnets/{doomed}")).StatusCode);

        // Not a 404 for a tailnet that is gone: the key itself is no longer valid, and no longer listed.
        Assert.Equal(ApiErrorCodes.Unauthorized, (await (await tenant.GetAsync("/api/v1/tailnets")).ReadError(HttpStatusCode.Unauthorized)).Code);
        var listed = await (await Operator.GetAsync("/api/v1/api-keys")).Content.ReadAsStringAsync();
        Assert.DoesNotContain(issued.ApiKey.Id, listed);
        Assert.Contains(kept.ApiKey.Id, listed);
        Assert.Equal(other, (await otherTenant.GetTailnet(other)).Id);
    }
}
