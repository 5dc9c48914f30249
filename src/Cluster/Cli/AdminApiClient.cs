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

/// <summary>
/// The CLI's HTTP client for the admin API. Returns the raw JSON, so <c>--json</c> prints exactly what
/// the server said.
/// <para>
/// Every request is safe to send again, so a failed one is retried (a refused or cut connection, a
/// timeout, a 503 while the cluster hands over) on the next coordinator given, with a short backoff
/// that honours Retry-After. Each request walks the list from the coordinator that last answered, so
/// its attempts reach every coordinator in turn however many requests fail at once, and every
/// coordinator at least twice: with two of three down, one bad answer from the third must not fail
/// the call. Creations carry an <c>Idempotency-Key</c>, the same on every attempt, so a retried
/// creation never makes a second object; the other changes are idempotent by value. When every
/// attempt fails, the error is what the last attempt got, unless no one answered it and a coordinator
/// said "unavailable" before: that answer says more than a dead node's refused connection.
/// </para>
/// </summary>
public sealed class AdminApiClient : IDisposable
{
    private static readonly TimeSpan[] Backoff = [TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4)];
    private readonly IReadOnlyList<Uri> _servers;
    private readonly string? _apiKey;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(30) };
    // The coordinator that answered last: where the next request starts.
    private int _preferred;

    public AdminApiClient(Uri server, string? apiKey) : this([server], apiKey) { }

    /// <param name="servers">Coordinators of one cluster, any of which serves any request; the first is tried first.</param>
    public AdminApiClient(IReadOnlyList<Uri> servers, string? apiKey)
    {
        if (servers.Count == 0) throw new ArgumentException("at least one server", nameof(servers));
        _servers = servers;
        _apiKey = apiKey;
    }

    public Task<JsonElement> GetAsync(string path) => SendAsync(HttpMethod.Get, path, null);

    public Task<JsonElement> PostAsync(string path, object body) => SendAsync(HttpMethod.Post, path, body);

    public Task<JsonElement> PatchAsync(string path, object body) => SendAsync(HttpMethod.Patch, path, body);

    public Task<JsonElement> PutAsync(string path, object body) => SendAsync(HttpMethod.Put, path, body);

    public Task<JsonElement> DeleteAsync(string path) => SendAsync(HttpMethod.Delete, path, null);

    /// <summary>A text resource (the policy), as the server wrote it.</summary>
    public Task<string> GetTextAsync(string path) => SendRawAsync(() => new HttpRequestMessage(HttpMethod.Get, path));

    /// <summary>Posts a text document (a HuJSON policy) and returns the JSON answer.</summary>
    public async Task<JsonElement> PostTextAsync(string path, string text, string mediaType)
    {
        var answer = await SendRawAsync(() => new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(text, System.Text.Encoding.UTF8, mediaType) });
        return answer.Length == 0 ? default : JsonDocument.Parse(answer).RootElement.Clone();
    }

    private async Task<JsonElement> SendAsync(HttpMethod method, string path, object? body)
    {
        var text = await SendRawAsync(() =>
        {
            var request = new HttpRequestMessage(method, path);
            if (body is not null) request.Content = JsonContent.Create(body, body.GetType(), options: AdminJson.Options);
            return request;
        });
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    private async Task<string> SendRawAsync(Func<HttpRequestMessage> build)
    {
        var idempotencyKey = Guid.NewGuid().ToString("N");
        var first = Volatile.Read(ref _preferred);
        // The latest "unavailable" a coordinator answered: when the last attempt then reaches no one
        // (a dead node's turn), it says more than "connection refused" does.
        AdminApiError? unavailable = null;
        Uri? unavailableFrom = null;
        var lastAttempt = Math.Max(Backoff.Length, 2 * _servers.Count - 1);
        for (var attempt = 0; ; attempt++)
        {
            var index = (first + attempt) % _servers.Count;
            var server = _servers[index];
            using var request = build();
            request.RequestUri = new Uri(server, request.RequestUri!.OriginalString);
            if (request.Method == HttpMethod.Post) request.Headers.Add("Idempotency-Key", idempotencyKey);
            if (_apiKey is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _apiKey);
            TimeSpan? retryAfter = null;
            try
            {
                using var response = await _http.SendAsync(request);
                var text = await response.Content.ReadAsStringAsync();
                if (response.IsSuccessStatusCode)
                {
                    Volatile.Write(ref _preferred, index);
                    return text;
                }
                var error = Parse(response, text);
                if (response.StatusCode != System.Net.HttpStatusCode.ServiceUnavailable || attempt >= lastAttempt) throw error;
                (unavailable, unavailableFrom) = (error, server);
                retryAfter = response.Headers.RetryAfter?.Delta;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                // Unreachable or cut off: the next coordinator may answer.
                if (attempt >= lastAttempt)
                {
                    if (unavailable is null) throw;
                    throw new AdminApiError(unavailable.Status, unavailable.Code,
                        $"{unavailable.Message} (said {unavailableFrom}; the last try, {server}, was not answered: {e.Message})", unavailable.Issues);
                }
            }
            var backoff = Backoff[Math.Min(attempt, Backoff.Length - 1)];
            await Task.Delay(retryAfter is { } asked && asked > backoff ? asked : backoff);
        }
    }

    private static AdminApiError Parse(HttpResponseMessage response, string text)
    {
        ApiError? error = null;
        try { error = JsonSerializer.Deserialize<ApiError>(text, AdminJson.Options); }
        catch (JsonException) { }
        return new AdminApiError((int)response.StatusCode, error?.Code ?? "http_" + (int)response.StatusCode,
            error?.Message ?? $"{(int)response.StatusCode} {response.ReasonPhrase}", error?.Issues);
    }

    public void Dispose() => _http.Dispose();
}
