using System.Text.Json;
using Weft.Contracts.Relay;

namespace Weft.Relay;

/// <summary>
/// A separate relay's <see cref="RelayOptions.AccessCheck"/>: asks a coordinator of the cluster that signs its
/// tickets (<c>POST /relay/access</c> on its API listener, <see cref="RelayAccessQuery"/>). With several
/// coordinators it keeps asking the one that last answered, and moves to the next when that one fails: at once
/// when it refuses the connection, answers an error or something that is not an answer, or takes longer than
/// <see cref="ConnectTimeout"/> to accept it; at the next check when it accepted but the relay's time for this
/// one ran out (a coordinator that hangs). When none answers the check throws, and the relay decides (a login
/// gets in on its signature, a live connection stays).
/// </summary>
public sealed class CoordinatorAccessCheck : IDisposable
{
    /// <summary>An answer for <see cref="RelayAccessQuery.MaxTickets"/> tickets is under 1 KB; anything far larger is not one.</summary>
    private const int MaxAnswerBytes = 64 * 1024;

    /// <summary>A host that takes longer to accept is passed over within the same check (the relay allows a check 3 s).</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(1);

    private readonly HttpClient _http;
    private readonly IReadOnlyList<Uri> _coordinators;
    private int _current;

    public CoordinatorAccessCheck(IReadOnlyList<Uri> coordinators, HttpMessageHandler? handler = null)
    {
        if (coordinators.Count == 0) throw new ArgumentException("at least one coordinator URL");
        _coordinators = [.. coordinators.Select(ToQueryUri)];
        _http = new HttpClient(handler ?? new SocketsHttpHandler { ConnectTimeout = ConnectTimeout, PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
        {
            // A larger answer fails its request (HttpRequestException), and the next coordinator is asked.
            MaxResponseContentBufferSize = MaxAnswerBytes,
        };
        _http.Timeout = Timeout.InfiniteTimeSpan; // the relay bounds each check (RelayOptions.AccessCheckTimeout)
    }

    /// <summary>An absolute http(s) URL of a coordinator's API listener, as given to <c>--access-check-url</c>.</summary>
    public static Uri ParseCoordinator(string text) =>
        Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && string.IsNullOrEmpty(uri.Query)
            ? uri
            : throw new FormatException($"--access-check-url: '{text}' is not an http(s) URL of a coordinator's API listener (e.g. https://coord1.example.net:8080)");

    /// <summary>The query's path under the coordinator's URL (which may carry a prefix, behind a proxy).</summary>
    private static Uri ToQueryUri(Uri coordinator) =>
        new(new Uri(coordinator.AbsoluteUri.EndsWith('/') ? coordinator.AbsoluteUri : coordinator.AbsoluteUri + "/"), RelayAccessQuery.Path.TrimStart('/'));

    public async Task<IReadOnlyList<bool?>> StillHaveAccessAsync(IReadOnlyList<RelayTicket> tickets, CancellationToken cancel)
    {
        var query = JsonSerializer.SerializeToUtf8Bytes(new RelayAccessQuery { Tickets = [.. tickets.Select(t => t.Signed)] });
        var problems = new List<string>();
        var first = Volatile.Read(ref _current);
        for (var n = 0; n < _coordinators.Count; n++)
        {
            var index = (first + n) % _coordinators.Count;
            var uri = _coordinators[index];
            try
            {
                using var content = new ByteArrayContent(query) { Headers = { ContentType = new("application/json") } };
                using var response = await _http.PostAsync(uri, content, cancel);
                var body = await response.Content.ReadAsByteArrayAsync(cancel);
                if (!response.IsSuccessStatusCode)
                {
                    problems.Add($"{uri.Authority} answered {(int)response.StatusCode}: {Truncate(System.Text.Encoding.UTF8.GetString(body))}");
                    continue;
                }
                var answer = RelayAccessAnswer.Parse(body, tickets.Count);
                Volatile.Write(ref _current, index);
                return answer.Allowed;
            }
            catch (Exception e) when (e is HttpRequestException or FormatException or IOException)
            {
                problems.Add($"{uri.Authority}: {e.Message}");
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                // The relay's time ran out on this one: the next check starts with the next.
                Interlocked.CompareExchange(ref _current, (index + 1) % _coordinators.Count, first);
                throw;
            }
            catch (OperationCanceledException e)
            {
                problems.Add($"{uri.Authority}: {e.Message}"); // the connect timeout
            }
        }
        throw new InvalidOperationException("no coordinator answered the access check: " + string.Join("; ", problems));
    }

    private static string Truncate(string text) => text.Length <= 200 ? text : text[..200] + "…";

    public void Dispose() => _http.Dispose();
}
