using System.Net;
using System.Net.Sockets;
using System.Text;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay.Tests;

/// <summary>
/// A separate relay's access check against coordinators that refuse, hang or answer nonsense: it moves to the
/// next coordinator (at once, or from the next check on when one hangs), and never takes a malformed or oversized
/// answer for one.
/// </summary>
public class CoordinatorAccessCheckTests
{
    [Fact]
    public async Task A_coordinator_that_refuses_or_answers_nonsense_is_passed_over_at_once_and_one_that_hangs_from_the_next_check_on()
    {
        using var key = Curve25519PrivateKey.Generate();
        var signing = RelayTicket.SigningKey(RelayTicket.NewSigningSeed());
        var wire = new RelayTicket(key.PublicKey, "tn_test", DateTimeOffset.UtcNow.AddHours(1)).Sign(signing);
        var ticket = RelayTicket.Verify(wire, [signing.PublicKey], DateTimeOffset.UtcNow, out _)!;

        await using var answers = new CannedHttpServer("200 OK", """{"allowed":[false]}""");
        await using var nonsense = new CannedHttpServer("200 OK", """{"allowed":[true,true]}""");
        await using var oversized = new CannedHttpServer("200 OK", "{\"allowed\":[" + string.Join(',', Enumerable.Repeat("true", 20_000)) + "]}");
        await using var failing = new CannedHttpServer("503 Service Unavailable", """{"code":"unavailable","message":"shutting down"}""");
        await using var hangs = new CannedHttpServer(null, "");
        var refused = new Uri("http://127.0.0.1:1");

        using (var check = new CoordinatorAccessCheck([refused, nonsense.Uri, oversized.Uri, failing.Uri, answers.Uri]))
        {
            Assert.Equal([false], await check.StillHaveAccessAsync([ticket], CancellationToken.None));
            Assert.Equal(wire, answers.LastBody is { } body ? Convert.FromBase64String(System.Text.Json.JsonDocument.Parse(body).RootElement.GetProperty("tickets")[0].GetString()!) : null);
            // The one that answered is asked first from now on.
            var before = (nonsense.Requests, failing.Requests);
            Assert.Equal([false], await check.StillHaveAccessAsync([ticket], CancellationToken.None));
            Assert.Equal(before, (nonsense.Requests, failing.Requests));
        }

        using (var check = new CoordinatorAccessCheck([refused, failing.Uri]))
        {
            var none = await Assert.ThrowsAsync<InvalidOperationException>(() => check.StillHaveAccessAsync([ticket], CancellationToken.None));
            Assert.Contains("503", none.Message);
            Assert.Contains("shutting down", none.Message);
        }

        using (var check = new CoordinatorAccessCheck([hangs.Uri, answers.Uri]))
        {
            using (var relaysLimit = new CancellationTokenSource(TimeSpan.FromMilliseconds(500)))
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => check.StillHaveAccessAsync([ticket], relaysLimit.Token));
            using (var relaysLimit = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
                Assert.Equal([false], await check.StillHaveAccessAsync([ticket], relaysLimit.Token));
        }
    }

    /// <summary>An HTTP server on loopback that answers every request with one canned response (or, with no status, never answers).</summary>
    private sealed class CannedHttpServer : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stopping = new();
        private readonly Task _loop;
        private readonly List<Socket> _held = [];
        private int _requests;

        public CannedHttpServer(string? status, string body)
        {
            _listener.Start();
            Uri = new Uri($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/");
            _loop = Task.Run(() => ServeAsync(status, body));
        }

        public Uri Uri { get; }

        public int Requests => Volatile.Read(ref _requests);

        public string? LastBody { get; private set; }

        private async Task ServeAsync(string? status, string body)
        {
            try
            {
                while (true)
                {
                    var socket = await _listener.AcceptSocketAsync(_stopping.Token);
                    lock (_held) _held.Add(socket);
                    if (status is null) continue; // accepted, never answered
                    _ = Task.Run(() => AnswerAsync(socket, status, body));
                }
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException) { }
        }

        private async Task AnswerAsync(Socket socket, string status, string body)
        {
            try
            {
                await using var stream = new NetworkStream(socket, ownsSocket: true);
                var request = new StringBuilder();
                var buffer = new byte[4096];
                int contentLength = -1, headerEnd = -1;
                while (headerEnd < 0 || request.Length < headerEnd + contentLength)
                {
                    var read = await stream.ReadAsync(buffer, _stopping.Token);
                    if (read == 0) return;
                    request.Append(Encoding.ASCII.GetString(buffer, 0, read));
                    var text = request.ToString();
                    if (headerEnd < 0 && text.IndexOf("\r\n\r\n", StringComparison.Ordinal) is >= 0 and var end)
                    {
                        headerEnd = end + 4;
                        var line = text[..end].Split("\r\n").FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
                        contentLength = line is null ? 0 : int.Parse(line["Content-Length:".Length..].Trim());
                    }
                }
                LastBody = request.ToString()[headerEnd..];
                Interlocked.Increment(ref _requests);
                var payload = Encoding.UTF8.GetBytes(body);
                await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {payload.Length}\r\nConnection: close\r\n\r\n"), _stopping.Token);
                await stream.WriteAsync(payload, _stopping.Token);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or SocketException) { }
        }

        public async ValueTask DisposeAsync()
        {
            await _stopping.CancelAsync();
            _listener.Stop();
            lock (_held) foreach (var socket in _held) socket.Dispose();
            await _loop;
        }
    }
}
