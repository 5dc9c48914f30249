using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Cli;

/// <summary>A failed admin call, carrying the API's error code.</summary>
public sealed class AdminApiError(int status, string code, string message, IReadOnlyList<ApiIssue>? issues = null) : Exception(message)
{
    public int Status { get; } = status;
    public string Code { get; } = code;
    public IReadOnlyList<ApiIssue> Issues { get; } = issues ?? [];
}

/// <summary>The CLI's HTTP client for the admin API. Returns the raw JSON, so <c>--json</c> prints exactly what the server said.</summary>
public sealed class AdminApiClient(Uri server, string? apiKey) : IDisposable
{
    private readonly HttpClient _http = new() { BaseAddress = server, Timeout = TimeSpan.FromSeconds(30) };

    public Task<JsonElement> GetAsync(string path) => SendAsync(HttpMethod.Get, path, null);

    public Task<JsonElement> PostAsync(string path, object body) => SendAsync(HttpMethod.Post, path, body);

    public Task<JsonElement> PatchAsync(string path, object body) => SendAsync(HttpMethod.Patch, path, body);

    public Task<JsonElement> DeleteAsync(string path) => SendAsync(HttpMethod.Delete, path, null);

    /// <summary>A text resource (the policy), as the server wrote it.</summary>
    public async Task<string> GetTextAsync(string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        return await SendRawAsync(request);
    }

    /// <summary>Posts a text document (a HuJSON policy) and returns the JSON answer.</summary>
    public async Task<JsonElement> PostTextAsync(string path, string text, string mediaType)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(text, System.Text.Encoding.UTF8, mediaType) };
        var answer = await SendRawAsync(request);
        return answer.Length == 0 ? default : JsonDocument.Parse(answer).RootElement.Clone();
    }

    private async Task<JsonElement> SendAsync(HttpMethod method, string path, object? body)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = JsonContent.Create(body, body.GetType(), options: AdminJson.Options);
        var text = await SendRawAsync(request);
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    private async Task<string> SendRawAsync(HttpRequestMessage request)
    {
        if (apiKey is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        using var response = await _http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        if (response.IsSuccessStatusCode) return text;

        ApiError? error = null;
        try { error = JsonSerializer.Deserialize<ApiError>(text, AdminJson.Options); }
        catch (JsonException) { }
        throw new AdminApiError((int)response.StatusCode, error?.Code ?? "http_" + (int)response.StatusCode,
            error?.Message ?? $"{(int)response.StatusCode} {response.ReasonPhrase}", error?.Issues);
    }

    public void Dispose() => _http.Dispose();
}
