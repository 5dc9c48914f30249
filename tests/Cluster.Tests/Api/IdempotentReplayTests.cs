using System.Net;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Api;

/// <summary>
/// A creation with an Idempotency-Key names the same object every time it is sent, secret included.
/// Once that object is gone (an API key or auth key revoked, a user or tailnet deleted), the same request sent again must
/// bring nothing back: not a revoked secret, under any scope, and not a registration retried for ever
/// with its name held.
/// </summary>
public class IdempotentReplayTests
{
    private static async Task<HttpResponseMessage> Post(HttpClient http, string path, object body, string idempotencyKey)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = System.Net.Http.Json.JsonContent.Create(body, options: AdminJson.Options) };
        request.Headers.Add("Idempotency-Key", idempotencyKey);
        return await http.SendAsync(request);
    }

    [Fact]
    public async Task A_creation_sent_again_after_its_object_was_revoked_or_deleted_is_refused_and_brings_nothing_back_even_after_a_restart()
    {
        await using var storage = TestStorage.NewSqlite();
        string tailnetId, tenantSecret, tenantKeyId, operatorSecret, keptId;
        const string name = "replayed";
        const string kept = "kept";
        var user = new { name = "alice@example.com" };
        var authKey = new { reusable = true };

        await using (var node = await TestCoordinator.StartAsync(storage))
        {
            var http = node.Http;
            tailnetId = (await (await Post(http, "/api/v1/tailnets", new CreateTailnetRequest(name), "tailnet-1")).ReadAs<TailnetResource>(HttpStatusCode.Created)).Id;
            var tenant = await (await Post(http, "/api/v1/api-keys", new { scope = "tailnet", tailnet = tailnetId }, "tenant-key-1")).ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);
            (tenantSecret, tenantKeyId) = (tenant.Key, tenant.ApiKey.Id);
            var operatorKey = await (await Post(http, "/api/v1/api-keys", new { scope = "operator" }, "operator-key-1")).ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);
            operatorSecret = operatorKey.Key;
            using (var asOperator = TestCoordinator.NewClient(node.Api, operatorSecret))
                (await asOperator.GetAsync("/api/v1/tailnets")).EnsureSuccessStatusCode();

            // In a tailnet that stays: a user deleted (alice left) and an auth key revoked (it leaked). Their
            // creations sent again (a late retry, a provisioning script run again) bring neither back.
            keptId = (await (await Post(http, "/api/v1/tailnets", new CreateTailnetRequest(kept), "kept-1")).ReadAs<TailnetResource>(HttpStatusCode.Created)).Id;
            var alice = await (await Post(http, $"/api/v1/tailnets/{kept}/users", user, "alice-1")).ReadAs<UserResource>(HttpStatusCode.Created);
            var leaked = await (await Post(http, $"/api/v1/tailnets/{kept}/auth-keys", authKey, "key-1")).ReadAs<CreatedAuthKeyResource>(HttpStatusCode.Created);
            Assert.Equal(alice.Id, (await (await Post(http, $"/api/v1/tailnets/{kept}/users", user, "alice-1")).ReadAs<UserResource>(HttpStatusCode.Created)).Id);
            Assert.Equal(HttpStatusCode.NoContent, (await http.DeleteAsync($"/api/v1/tailnets/{kept}/users/{alice.Id}")).StatusCode);
            Assert.Equal(HttpStatusCode.NoContent, (await http.DeleteAsync($"/api/v1/tailnets/{kept}/auth-keys/{leaked.AuthKey.Id}")).StatusCode);
            await AssertGoneForGood(http, kept, user, authKey);

            // The operator key leaks and is revoked. Its creation, sent again, is refused under either scope.
            Assert.Equal(HttpStatusCode.NoContent, (await http.DeleteAsync($"/api/v1/api-keys/{operatorKey.ApiKey.Id}")).StatusCode);
            var refused = await (await Post(http, "/api/v1/api-keys", new { scope = "operator" }, "operator-key-1")).ReadError(HttpStatusCode.Conflict);
            Assert.Contains("revoked", refused.Message);
            await (await Post(http, "/api/v1/api-keys", new { scope = "tailnet", tailnet = tailnetId }, "operator-key-1")).ReadError(HttpStatusCode.Conflict);

            // The tailnet is deleted, and its tenant key with it. That key's creation sent again, now asking
            // for an operator key, would have given the tenant's old secret operator rights.
            Assert.Equal(HttpStatusCode.NoContent, (await http.DeleteAsync($"/api/v1/tailnets/{tailnetId}")).StatusCode);
            await (await Post(http, "/api/v1/api-keys", new { scope = "operator" }, "tenant-key-1")).ReadError(HttpStatusCode.Conflict);

            // The tailnet's creation sent again is refused at once (not "completes in the background"), and its name is free.
            var again = await (await Post(http, "/api/v1/tailnets", new CreateTailnetRequest(name), "tailnet-1")).ReadError(HttpStatusCode.Conflict);
            Assert.Contains("deleted", again.Message);
            await (await http.GetAsync($"/api/v1/tailnets/{name}")).ReadError(HttpStatusCode.NotFound);
            await AssertRevoked(node, tenantSecret, operatorSecret);
        }

        await using (var restarted = await TestCoordinator.StartAsync(storage))
        {
            var http = restarted.Http;
            await AssertRevoked(restarted, tenantSecret, operatorSecret);
            await AssertGoneForGood(http, keptId, user, authKey);
            await (await Post(http, "/api/v1/api-keys", new { scope = "operator" }, "tenant-key-1")).ReadError(HttpStatusCode.Conflict);
            await (await Post(http, "/api/v1/api-keys", new { scope = "operator" }, "operator-key-1")).ReadError(HttpStatusCode.Conflict);
            await (await Post(http, "/api/v1/tailnets", new CreateTailnetRequest(name), "tailnet-1")).ReadError(HttpStatusCode.Conflict);
            // The name was freed for good: a new creation takes it, as a new tailnet.
            var reborn = await (await Post(http, "/api/v1/tailnets", new CreateTailnetRequest(name), "tailnet-2")).ReadAs<TailnetResource>(HttpStatusCode.Created);
            Assert.NotEqual(tailnetId, reborn.Id);
            Assert.Equal(reborn, await http.GetTailnet(name));
            var keys = await (await http.GetAsync("/api/v1/api-keys")).ReadAs<ApiKeyListResource>(HttpStatusCode.OK);
            Assert.DoesNotContain(keys.ApiKeys, k => k.Id == tenantKeyId);
        }
    }

    /// <summary>The deleted user and the revoked auth key stay gone, while a new creation of the same name is made.</summary>
    private static async Task AssertGoneForGood(HttpClient http, string tailnet, object user, object authKey)
    {
        Assert.Contains("deleted", (await (await Post(http, $"/api/v1/tailnets/{tailnet}/users", user, "alice-1")).ReadError(HttpStatusCode.Conflict)).Message);
        Assert.Contains("revoked", (await (await Post(http, $"/api/v1/tailnets/{tailnet}/auth-keys", authKey, "key-1")).ReadError(HttpStatusCode.Conflict)).Message);
        var users = await (await http.GetAsync($"/api/v1/tailnets/{tailnet}/users")).ReadAs<UserListResource>(HttpStatusCode.OK);
        Assert.DoesNotContain(users.Users, u => u.Name == "alice@example.com");
    }

    private static async Task AssertRevoked(TestCoordinator node, params string[] secrets)
    {
        foreach (var secret in secrets)
        {
            using var client = TestCoordinator.NewClient(node.Api, secret);
            await (await client.GetAsync("/api/v1/tailnets")).ReadError(HttpStatusCode.Unauthorized);
        }
    }
}
