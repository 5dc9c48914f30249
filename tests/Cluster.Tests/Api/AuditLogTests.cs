using System.Net;
using System.Text;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Api;

/// <summary>
/// Every admin change lands in the audit log of its tailnet (or the cluster's), with who, what, when
/// and from where; reads, dry runs and refused changes do not; the log survives a restart.
/// </summary>
public sealed class AuditLogTests : IAsyncLifetime
{
    private readonly TestStorage _storage = TestStorage.NewSqlite();
    private TestCoordinator _node = null!;

    public async Task InitializeAsync() => _node = await TestCoordinator.StartAsync(_storage);

    public async Task DisposeAsync()
    {
        await _node.DisposeAsync();
        await _storage.DisposeAsync();
    }

    private static StringContent Policy(string text) => new(text, Encoding.UTF8, "application/hujson");

    [Fact]
    public async Task Each_change_is_recorded_with_who_what_and_where_and_the_record_survives_a_restart()
    {
        var started = DateTimeOffset.UtcNow;
        var tailnet = await _node.Http.CreateTailnet("audited");
        await _node.Http.CreateTailnet("elsewhere");
        var tenantKey = await (await _node.Http.PostJson("/api/v1/api-keys", new { scope = "tailnet", tailnet = "audited", description = "tenant admin" }))
            .ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);
        using var tenant = TestCoordinator.NewClient(_node.Api, tenantKey.Key);

        await tenant.CreateAuthKey("audited");
        await (await tenant.PostAsync("/api/v1/tailnets/audited/policy/validate", Policy(PolicyText))).ReadAs<PolicyValidationResource>(HttpStatusCode.OK);
        await (await tenant.PostAsync("/api/v1/tailnets/audited/policy", Policy("{ \"acls\": 3 }"))).ReadError(HttpStatusCode.BadRequest);
        await (await tenant.PostAsync("/api/v1/tailnets/audited/policy", Policy(PolicyText))).ReadAs<PolicyResource>(HttpStatusCode.OK);
        await (await _node.Http.PostJson("/api/v1/tailnets/audited/rename", new { name = "audited-renamed" })).ReadAs<TailnetResource>(HttpStatusCode.OK);
        var operatorKey = await (await _node.Http.PostJson("/api/v1/api-keys", new { scope = "operator", description = "second operator" }))
            .ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);

        // The tenant reads its own tailnet's log, under the tailnet's new name: it follows the id.
        var log = await tenant.GetAuditLog("/api/v1/tailnets/audited-renamed/audit?since=1h");
        Assert.Equal(tailnet.Id, log.Log);
        Assert.Equal(
        [
            "POST /api/v1/tailnets",
            "POST /api/v1/api-keys",
            "POST /api/v1/tailnets/{tailnet}/auth-keys",
            "POST /api/v1/tailnets/{tailnet}/policy",
            "POST /api/v1/tailnets/{tailnet}/rename",
        ], log.Entries.Select(e => e.Action));
        var tenantKeyId = tenantKey.ApiKey.Id;
        Assert.Equal(["operator", "operator", "tailnet-key " + tenantKeyId, "tailnet-key " + tenantKeyId, "operator"],
            log.Entries.Select(e => e.Actor.StartsWith("operator-key ", StringComparison.Ordinal) ? "operator" : e.Actor));
        Assert.All(log.Entries, e => Assert.Equal("127.0.0.1", e.Source));
        Assert.All(log.Entries, e => Assert.InRange(e.At, started.AddSeconds(-1), DateTimeOffset.UtcNow.AddSeconds(1)));
        Assert.Equal(HttpStatusCode.Created, (HttpStatusCode)log.Entries[2].Status);
        Assert.Contains("tailnet=audited", log.Entries[2].Target);

        // The new operator key belongs to no tailnet: it is in the cluster's log, which tenants may not read.
        var cluster = await _node.Http.GetAuditLog("/api/v1/audit?since=1h");
        var issued = Assert.Single(cluster.Entries, e => e.Action == "POST /api/v1/api-keys");
        Assert.StartsWith("operator-key ", issued.Actor);
        Assert.Equal(ApiErrorCodes.Forbidden, (await (await tenant.GetAsync("/api/v1/audit")).ReadError(HttpStatusCode.Forbidden)).Code);
        Assert.Equal(ApiErrorCodes.NotFound, (await (await tenant.GetAsync("/api/v1/tailnets/elsewhere/audit")).ReadError(HttpStatusCode.NotFound)).Code);
        Assert.Equal(ApiErrorCodes.InvalidRequest, (await (await tenant.GetAsync("/api/v1/tailnets/audited-renamed/audit?since=yesterday")).ReadError(HttpStatusCode.BadRequest)).Code);
        Assert.Equal(2, (await tenant.GetAuditLog("/api/v1/tailnets/audited-renamed/audit?since=1h&limit=2")).Entries.Count);
        Assert.NotNull(operatorKey.Key);

        // Stored, not remembered: a restarted coordinator shows the same log.
        await _node.DisposeAsync();
        _node = await TestCoordinator.StartAsync(_storage);
        var after = await _node.Http.GetAuditLog($"/api/v1/tailnets/{tailnet.Id}/audit?since=1h");
        Assert.Equal(log.Entries, after.Entries);
    }

    private const string PolicyText = """
        { "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:22"] } ] }
        """;
}
