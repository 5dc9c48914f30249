using System.Net;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Api;

/// <summary>One SQLite-backed coordinator shared by the admin API tests.</summary>
public sealed class CoordinatorFixture : IAsyncLifetime
{
    private TestStorage _storage = null!;

    public TestCoordinator Node { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        _storage = TestStorage.NewSqlite();
        Node = await TestCoordinator.StartAsync(_storage);
    }

    public async Task DisposeAsync()
    {
        await Node.DisposeAsync();
        await _storage.DisposeAsync();
    }
}

/// <summary>The admin API over real HTTP: happy paths, every kind of bad input, and that bad input writes nothing.</summary>
public class AdminApiTests(CoordinatorFixture fixture) : IClassFixture<CoordinatorFixture>
{
    private HttpClient Http => fixture.Node.Http;

    private static string Unique(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..8]}";

    [Fact]
    public async Task Health_needs_no_key_and_shows_this_node_up()
    {
        using var anonymous = TestCoordinator.NewClient(fixture.Node.Api, apiKey: null);

        var health = await (await anonymous.GetAsync("/healthz")).ReadAs<HealthReport>(HttpStatusCode.OK);

        Assert.Equal("up", health.Status);
        Assert.Equal("up", health.Self.Status);
        Assert.Contains(health.Members, m => m.Address == health.Self.Address && m.Roles.Contains("coordinator"));
    }

    [Fact]
    public async Task Readiness_needs_no_key_and_lists_every_check_it_passed()
    {
        using var anonymous = TestCoordinator.NewClient(fixture.Node.Api, apiKey: null);

        var ready = await (await anonymous.GetAsync("/healthz/ready")).ReadAs<ReadinessReport>(HttpStatusCode.OK);

        Assert.True(ready.Ready);
        // Akka.Hosting's cluster readiness, Akka.Persistence's journal and snapshot store, and Weft's own.
        Assert.Equal(
            ["akka.cluster.join", "journal", "majority", "replicas", "shutdown", "snapshot-store", "started", "storage"],
            ready.Checks.Select(c => c.Name).Order(StringComparer.Ordinal));
        Assert.All(ready.Checks, c => Assert.True(c.Ok, $"{c.Name}: {c.Detail}"));
    }

    [Fact]
    public async Task A_creation_sent_again_with_its_idempotency_key_answers_with_the_first_object_and_makes_no_second()
    {
        async Task<HttpResponseMessage> Post(string path, object body, string idempotencyKey)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = System.Net.Http.Json.JsonContent.Create(body, options: AdminJson.Options) };
            request.Headers.Add("Idempotency-Key", idempotencyKey);
            return await Http.SendAsync(request);
        }

        var name = Unique("idem");
        var first = await (await Post("/api/v1/tailnets", new CreateTailnetRequest(name), "create-tailnet-1")).ReadAs<TailnetResource>(HttpStatusCode.Created);
        var again = await (await Post("/api/v1/tailnets", new CreateTailnetRequest(name), "create-tailnet-1")).ReadAs<TailnetResource>(HttpStatusCode.Created);
        Assert.Equal(first, again);
        // The same key for another name is a different request: refused, nothing created.
        await (await Post("/api/v1/tailnets", new CreateTailnetRequest(Unique("other")), "create-tailnet-1")).ReadError(HttpStatusCode.Conflict);

        var user = await (await Post($"/api/v1/tailnets/{first.Id}/users", new { name = "alice@example.com" }, "user-1")).ReadAs<UserResource>(HttpStatusCode.Created);
        Assert.Equal(user, await (await Post($"/api/v1/tailnets/{first.Id}/users", new { name = "alice@example.com" }, "user-1")).ReadAs<UserResource>(HttpStatusCode.Created));

        await Http.DefineTags(first.Id, "tag:ci");
        var keyBody = new { reusable = true, tags = new[] { "tag:ci" } };
        var key = await (await Post($"/api/v1/tailnets/{first.Id}/auth-keys", keyBody, "key-1")).ReadAs<CreatedAuthKeyResource>(HttpStatusCode.Created);
        var keyAgain = await (await Post($"/api/v1/tailnets/{first.Id}/auth-keys", keyBody, "key-1")).ReadAs<CreatedAuthKeyResource>(HttpStatusCode.Created);
        Assert.Equal(key.Key, keyAgain.Key); // the secret too: a client that lost the first answer gets it now
        Assert.Equal(key.AuthKey.Id, keyAgain.AuthKey.Id);
        await (await Post($"/api/v1/tailnets/{first.Id}/auth-keys", new { reusable = false }, "key-1")).ReadError(HttpStatusCode.Conflict);
        var other = await (await Post($"/api/v1/tailnets/{first.Id}/auth-keys", keyBody, "key-2")).ReadAs<CreatedAuthKeyResource>(HttpStatusCode.Created);
        Assert.NotEqual(key.Key, other.Key);

        var apiKey = await (await Post("/api/v1/api-keys", new { scope = "tailnet", tailnet = first.Id }, "api-key-1")).ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);
        Assert.Equal(apiKey.Key, (await (await Post("/api/v1/api-keys", new { scope = "tailnet", tailnet = first.Id }, "api-key-1")).ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created)).Key);

        Assert.Single((await Http.ListTailnets()).Tailnets, t => t.Name == name);
        var keys = await (await Http.GetAsync($"/api/v1/tailnets/{first.Id}/auth-keys")).ReadAs<AuthKeyListResource>(HttpStatusCode.OK);
        Assert.Equal(2, keys.AuthKeys.Count);
        var users = await (await Http.GetAsync($"/api/v1/tailnets/{first.Id}/users")).ReadAs<UserListResource>(HttpStatusCode.OK);
        Assert.Single(users.Users);
    }

    [Fact]
    public async Task A_tailnet_goes_through_create_read_update_rename_and_delete()
    {
        var name = Unique("crud");
        var created = await Http.CreateTailnet(name);
        Assert.StartsWith("tn_", created.Id);
        Assert.Equal(new TailnetSettingsResource(180, $"{name}.weft.internal", 300), created.Settings);

        Assert.Equal(created, await Http.GetTailnet(created.Id));
        Assert.Equal(created, await Http.GetTailnet(name));

        var updated = await (await Http.PatchJson($"/api/v1/tailnets/{name}", new UpdateTailnetSettingsRequest(NodeKeyExpiryDays: 7)))
            .ReadAs<TailnetResource>(HttpStatusCode.OK);
        Assert.Equal(new TailnetSettingsResource(7, $"{name}.weft.internal", 300), updated.Settings);

        var newName = Unique("renamed");
        var renamed = await (await Http.PostJson($"/api/v1/tailnets/{created.Id}/rename", new RenameTailnetRequest(newName)))
            .ReadAs<TailnetResource>(HttpStatusCode.OK);
        Assert.Equal(newName, renamed.Name);
        await (await Http.GetAsync($"/api/v1/tailnets/{name}")).ReadError(HttpStatusCode.NotFound);

        Assert.Equal(HttpStatusCode.NoContent, (await Http.DeleteAsync($"/api/v1/tailnets/{created.Id}")).StatusCode);
        await (await Http.GetAsync($"/api/v1/tailnets/{created.Id}")).ReadError(HttpStatusCode.NotFound);
        Assert.DoesNotContain((await Http.ListTailnets()).Tailnets, t => t.Id == created.Id);
    }

    [Fact]
    public async Task A_missing_key_is_401()
    {
        using var anonymous = TestCoordinator.NewClient(fixture.Node.Api, apiKey: null);

        var error = await (await anonymous.GetAsync("/api/v1/tailnets")).ReadError(HttpStatusCode.Unauthorized);

        Assert.Equal(ApiErrorCodes.Unauthorized, error.Code);
        Assert.Contains("Authorization: Bearer", error.Message);
    }

    [Theory]
    [InlineData("weft_aaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")] // well formed, unknown id
    [InlineData("not-a-weft-key")]
    public async Task A_wrong_key_is_401(string key)
    {
        using var intruder = TestCoordinator.NewClient(fixture.Node.Api, key);

        Assert.Equal(ApiErrorCodes.Unauthorized, (await (await intruder.GetAsync("/api/v1/tailnets")).ReadError(HttpStatusCode.Unauthorized)).Code);
    }

    [Fact]
    public async Task The_right_key_id_with_a_wrong_secret_is_401_and_writes_nothing()
    {
        var keyId = TestCoordinator.OperatorKey.Split('_')[1];
        using var forger = TestCoordinator.NewClient(fixture.Node.Api, $"weft_{keyId}_{new string('a', 32)}");
        var before = await Http.GetStringAsync("/api/v1/tailnets");

        await (await forger.PostJson("/api/v1/tailnets", new CreateTailnetRequest(Unique("forged")))).ReadError(HttpStatusCode.Unauthorized);

        Assert.Equal(before, await Http.GetStringAsync("/api/v1/tailnets"));
    }

    public static TheoryData<string, string, HttpStatusCode, string, string> BadCreateBodies => new()
    {
        { "{\"name\": ", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.MalformedJson, "not valid JSON" },
        { "", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.InvalidRequest, "empty" },
        { "[1,2]", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.InvalidRequest, "must be a JSON object" },
        { "{}", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.InvalidRequest, "missing required field 'name'" },
        { "{\"name\": 42}", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.InvalidRequest, "'name' must be a string" },
        { "{\"name\": \"ok\", \"nodeKeyExpiryDays\": \"ten\"}", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.InvalidRequest, "'nodeKeyExpiryDays' must be an integer" },
        { "{\"name\": \"ok\", \"nodeKeyExpiryDays\": 1.5}", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.InvalidRequest, "whole number" },
        { "{\"name\": \"ok\", \"nodeKeyExpiryDays\": 999}", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.InvalidRequest, "between 1 and 180" },
        { "{\"name\": \"ok\", \"dnsSuffix\": \"Not Valid\"}", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.InvalidRequest, "dnsSuffix" },
        { "{\"name\": \"ok\", \"colour\": \"blue\"}", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.InvalidRequest, "unknown field 'colour'" },
        { "{\"name\": \"Has Spaces\"}", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.InvalidRequest, "is invalid" },
        { "name=acme", "application/x-www-form-urlencoded", HttpStatusCode.UnsupportedMediaType, ApiErrorCodes.UnsupportedMediaType, "application/json" },
        { "{\"name\": \"\\ud800\"}", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.MalformedJson, "lone surrogate" },
        { "{\"\\udfff\": 1, \"name\": \"ok\"}", "application/json", HttpStatusCode.BadRequest, ApiErrorCodes.MalformedJson, "not text" },
    };

    [Fact]
    public async Task A_body_that_is_not_utf8_is_400_and_writes_nothing()
    {
        var before = await Http.GetStringAsync("/api/v1/tailnets");
        using var content = new ByteArrayContent([.. "{\"name\": \"a"u8, 0xC3, 0x28, .. "\"}"u8]);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");

        var error = await (await Http.PostAsync("/api/v1/tailnets", content)).ReadError(HttpStatusCode.BadRequest);

        Assert.Equal(ApiErrorCodes.MalformedJson, error.Code);
        Assert.Equal(before, await Http.GetStringAsync("/api/v1/tailnets"));
    }

    [Theory]
    [MemberData(nameof(BadCreateBodies))]
    public async Task A_bad_create_body_gets_a_precise_error_and_writes_nothing(string body, string contentType, HttpStatusCode status, string code, string reason)
    {
        var before = await Http.GetStringAsync("/api/v1/tailnets");

        var error = await (await Http.SendRaw(HttpMethod.Post, "/api/v1/tailnets", body, contentType)).ReadError(status);

        Assert.Equal(code, error.Code);
        Assert.Contains(reason, error.Message);
        Assert.Equal(before, await Http.GetStringAsync("/api/v1/tailnets"));
    }

    [Fact]
    public async Task An_oversized_body_is_413_and_writes_nothing()
    {
        var before = await Http.GetStringAsync("/api/v1/tailnets");
        var huge = "{\"name\": \"" + new string('a', 200_000) + "\"}";

        var error = await (await Http.SendRaw(HttpMethod.Post, "/api/v1/tailnets", huge)).ReadError(HttpStatusCode.RequestEntityTooLarge);

        Assert.Equal(ApiErrorCodes.PayloadTooLarge, error.Code);
        Assert.Equal(before, await Http.GetStringAsync("/api/v1/tailnets"));
    }

    [Fact]
    public async Task A_taken_name_is_409_and_the_first_tailnet_is_untouched()
    {
        var name = Unique("taken");
        var first = await Http.CreateTailnet(name);

        var error = await (await Http.PostJson("/api/v1/tailnets", new CreateTailnetRequest(name, 5))).ReadError(HttpStatusCode.Conflict);

        Assert.Contains(name, error.Message);
        Assert.Equal(first, await Http.GetTailnet(name));
    }

    [Fact]
    public async Task An_invalid_settings_change_leaves_the_tailnet_as_it_was()
    {
        var tailnet = await Http.CreateTailnet(Unique("stable"));

        var error = await (await Http.PatchJson($"/api/v1/tailnets/{tailnet.Id}", new UpdateTailnetSettingsRequest(NodeKeyExpiryDays: 3, DnsSuffix: "bad_suffix")))
            .ReadError(HttpStatusCode.BadRequest);

        Assert.Contains("dnsSuffix", error.Message);
        Assert.Equal(tailnet, await Http.GetTailnet(tailnet.Id));
        await (await Http.SendRaw(HttpMethod.Patch, $"/api/v1/tailnets/{tailnet.Id}", "{}")).ReadError(HttpStatusCode.BadRequest);
    }

    [Theory]
    [InlineData("GET", "/api/v1/tailnets/tn_doesnotexist", null)]
    [InlineData("GET", "/api/v1/tailnets/no-such-name", null)]
    [InlineData("PATCH", "/api/v1/tailnets/tn_doesnotexist", "{\"nodeKeyExpiryDays\": 5}")]
    [InlineData("POST", "/api/v1/tailnets/tn_doesnotexist/rename", "{\"name\": \"x\"}")]
    [InlineData("DELETE", "/api/v1/tailnets/tn_doesnotexist", null)]
    [InlineData("GET", "/api/v1/no-such-resource", null)]
    public async Task Unknown_ids_and_paths_are_404_with_a_json_error(string method, string path, string? body)
    {
        var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (body is not null) request.Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");

        var error = await (await Http.SendAsync(request)).ReadError(HttpStatusCode.NotFound);

        Assert.Equal(ApiErrorCodes.NotFound, error.Code);
    }

    [Fact]
    public async Task Renaming_to_a_taken_name_is_409_and_keeps_both_names()
    {
        var a = await Http.CreateTailnet(Unique("a"));
        var b = await Http.CreateTailnet(Unique("b"));

        await (await Http.PostJson($"/api/v1/tailnets/{a.Id}/rename", new RenameTailnetRequest(b.Name))).ReadError(HttpStatusCode.Conflict);

        Assert.Equal(a.Name, (await Http.GetTailnet(a.Id)).Name);
        Assert.Equal(b.Name, (await Http.GetTailnet(b.Id)).Name);
    }

    [Fact]
    public async Task A_deleted_tailnets_name_can_be_used_again()
    {
        var name = Unique("reuse");
        var first = await Http.CreateTailnet(name);
        Assert.Equal(HttpStatusCode.NoContent, (await Http.DeleteAsync($"/api/v1/tailnets/{name}")).StatusCode);

        var second = await Http.CreateTailnet(name);

        Assert.NotEqual(first.Id, second.Id);
        Assert.Equal(second, await Http.GetTailnet(name));
    }
}
