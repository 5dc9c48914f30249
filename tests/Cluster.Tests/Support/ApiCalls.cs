using System.Net;
using System.Net.Http.Json;
using System.Text;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Support;

/// <summary>Small helpers for calling the admin API and reading its answers.</summary>
public static class ApiCalls
{
    public static async Task<T> ReadAs<T>(this HttpResponseMessage response, HttpStatusCode expected)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"expected {(int)expected}, got {(int)response.StatusCode}: {body}");
        return System.Text.Json.JsonSerializer.Deserialize<T>(body, AdminJson.Options)!;
    }

    public static async Task<ApiError> ReadError(this HttpResponseMessage response, HttpStatusCode expected)
    {
        var error = await response.ReadAs<ApiError>(expected);
        Assert.False(string.IsNullOrWhiteSpace(error.Code));
        Assert.False(string.IsNullOrWhiteSpace(error.Message));
        return error;
    }

    public static Task<HttpResponseMessage> PostJson(this HttpClient http, string path, object body) =>
        http.PostAsJsonAsync(path, body, AdminJson.Options);

    public static Task<HttpResponseMessage> PatchJson(this HttpClient http, string path, object body) =>
        http.PatchAsJsonAsync(path, body, AdminJson.Options);

    public static Task<HttpResponseMessage> SendRaw(this HttpClient http, HttpMethod method, string path, string body, string contentType = "application/json") =>
        http.SendAsync(new HttpRequestMessage(method, path) { Content = new StringContent(body, Encoding.UTF8, contentType) });

    /// <summary>Names <paramref name="issuer"/> the tailnet's provider (with the email and groups scopes); fails the test if refused.</summary>
    public static async Task SetProvider(this HttpClient http, string tailnetId, string issuer, string clientId, string secret, string[]? domains = null)
    {
        using var set = await http.PutAsJsonAsync($"/api/v1/tailnets/{tailnetId}/sso",
            new SetSsoRequest(issuer, clientId, secret, domains ?? [], [], Scopes: ["email", "groups"]), AdminJson.Options);
        Assert.True(set.IsSuccessStatusCode, await set.Content.ReadAsStringAsync());
    }

    public static async Task<TailnetResource> CreateTailnet(this HttpClient http, string name, int? expiryDays = null, string? dnsSuffix = null) =>
        await (await http.PostJson("/api/v1/tailnets", new CreateTailnetRequest(name, expiryDays, dnsSuffix))).ReadAs<TailnetResource>(HttpStatusCode.Created);

    /// <summary>An audit log page (<c>/api/v1/audit</c> or a tailnet's <c>/audit</c>, with its query), which must answer 200.</summary>
    public static async Task<AuditLogResource> GetAuditLog(this HttpClient http, string path) =>
        await (await http.GetAsync(path)).ReadAs<AuditLogResource>(HttpStatusCode.OK);

    public static async Task<TailnetListResource> ListTailnets(this HttpClient http) =>
        await (await http.GetAsync("/api/v1/tailnets")).ReadAs<TailnetListResource>(HttpStatusCode.OK);

    public static async Task<TailnetResource> GetTailnet(this HttpClient http, string idOrName) =>
        await (await http.GetAsync($"/api/v1/tailnets/{idOrName}")).ReadAs<TailnetResource>(HttpStatusCode.OK);
}

/// <summary>Admin API helpers for what lives inside a tailnet.</summary>
public static class MemberCalls
{
    /// <summary>Sets a policy that allows everything (no acls: Tailscale's default) and defines these tags, owned by admins.</summary>
    public static async Task DefineTags(this HttpClient http, string tailnet, params string[] tags)
    {
        var policy = "{ \"tagOwners\": { " + string.Join(", ", tags.Select(t => $"\"{t}\": []")) + " } }";
        await (await http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", new StringContent(policy, System.Text.Encoding.UTF8, "application/hujson")))
            .ReadAs<PolicyResource>(System.Net.HttpStatusCode.OK);
    }

    public static async Task<CreatedAuthKeyResource> CreateAuthKey(this HttpClient http, string tailnet, bool reusable = false, bool ephemeral = false,
        string[]? tags = null, int? expirySeconds = null, string? user = null)
    {
        var body = new Dictionary<string, object?> { ["reusable"] = reusable, ["ephemeral"] = ephemeral };
        if (tags is not null) body["tags"] = tags;
        if (expirySeconds is not null) body["expirySeconds"] = expirySeconds;
        if (user is not null) body["user"] = user;
        return await (await http.PostJson($"/api/v1/tailnets/{tailnet}/auth-keys", body)).ReadAs<CreatedAuthKeyResource>(System.Net.HttpStatusCode.Created);
    }

    public static async Task<DeviceListResource> ListDevices(this HttpClient http, string tailnet) =>
        await (await http.GetAsync($"/api/v1/tailnets/{tailnet}/devices")).ReadAs<DeviceListResource>(System.Net.HttpStatusCode.OK);

    public static async Task<DeviceResource> GetDevice(this HttpClient http, string tailnet, string device) =>
        await (await http.GetAsync($"/api/v1/tailnets/{tailnet}/devices/{device}")).ReadAs<DeviceResource>(System.Net.HttpStatusCode.OK);

    public static async Task<DeviceStreamResource> GetStream(this HttpClient http, string tailnet, string device) =>
        await (await http.GetAsync($"/api/v1/tailnets/{tailnet}/devices/{device}/stream")).ReadAs<DeviceStreamResource>(System.Net.HttpStatusCode.OK);

    /// <summary>The stored state of a tailnet's devices as JSON, to compare before and after a refused request.</summary>
    public static async Task<string> DevicesSnapshot(this HttpClient http, string tailnet)
    {
        var devices = await http.ListDevices(tailnet);
        // Online and last-seen are presence, not stored state.
        return System.Text.Json.JsonSerializer.Serialize(devices.Devices.Select(d => d with { Online = false, LastSeen = null }).OrderBy(d => d.Id));
    }
}
