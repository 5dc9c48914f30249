using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Cli;

/// <summary>A failed admin call, carrying the API's error code.</summary>
public sealed class AdminApiError(int status, string code, string message) : Exception(message)
{
    public int Status { get; } = status;
    public string Code { get; } = code;
}

/// <summary>The CLI's HTTP client for the admin API. Returns the raw JSON, so <c>--json</c> prints exactly what the server said.</summary>
public sealed class AdminApiClient(Uri server, string? apiKey) : IDisposable
{
    private readonly HttpClient _http = new() { BaseAddress = server, Timeout = TimeSpan.FromSeconds(30) };

    public Task<JsonElement> GetAsync(string path) => SendAsync(HttpMethod.Get, path, null);

    public Task<JsonElement> PostAsync(string path, object body) => SendAsync(HttpMethod.Post, path, body);

    public Task<JsonElement> PatchAsync(string path, object body) => SendAsync(HttpMethod.Patch, path, body);

    public Task<JsonElement> DeleteAsync(string path) => SendAsync(HttpMethod.Delete, path, null);

    private async Task<JsonElement> SendAsync(HttpMethod method, string path, object? body)
    {
        using var request = new HttpRequestMessage(method, path);
        if (apiKey is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        if (body is not null) request.Content = JsonContent.Create(body, body.GetType(), options: AdminJson.Options);

        using var response = await _http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        if (response.IsSuccessStatusCode)
            return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();

        ApiError? error = null;
        try { error = JsonSerializer.Deserialize<ApiError>(text, AdminJson.Options); }
        catch (JsonException) { }
        throw new AdminApiError((int)response.StatusCode, error?.Code ?? "http_" + (int)response.StatusCode,
            error?.Message ?? $"{(int)response.StatusCode} {response.ReasonPhrase}");
    }

    public void Dispose() => _http.Dispose();
}
