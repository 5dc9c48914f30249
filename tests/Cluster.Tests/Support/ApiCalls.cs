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

    public static async Task<TailnetResource> CreateTailnet(this HttpClient http, string name, int? expiryDays = null, string? dnsSuffix = null) =>
        await (await http.PostJson("/api/v1/tailnets", new CreateTailnetRequest(name, expiryDays, dnsSuffix))).ReadAs<TailnetResource>(HttpStatusCode.Created);

    public static async Task<TailnetListResource> ListTailnets(this HttpClient http) =>
        await (await http.GetAsync("/api/v1/tailnets")).ReadAs<TailnetListResource>(HttpStatusCode.OK);

    public static async Task<TailnetResource> GetTailnet(this HttpClient http, string idOrName) =>
        await (await http.GetAsync($"/api/v1/tailnets/{idOrName}")).ReadAs<TailnetResource>(HttpStatusCode.OK);
}
