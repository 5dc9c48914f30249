using System.Net;
using System.Net.Sockets;
using System.Text;
using Weft.Cluster.Cli;
using Weft.ClusterLab;

namespace Weft.Cluster.Tests.Cli;

/// <summary>The admin client's failover across coordinators, against real sockets: refused ports and a live HTTP server.</summary>
public sealed class AdminApiClientTests
{
    [Fact]
    public async Task Requests_that_fail_together_each_go_on_to_the_coordinator_that_answers()
    {
        // Two coordinators refuse (a killed node, one restarting), the third answers. Thirty requests fail on
        // the first at once, as a load test's end check or a script's parallel calls do. Before, they moved on
        // through one shared counter, which thirty failures moved by a multiple of three: every retry went back
        // to the first node, and every request gave up after its five attempts.
        var refused = new[] { RefusedUrl(), RefusedUrl() };
        using var live = new HttpListener();
        var liveUrl = new Uri($"http://127.0.0.1:{CoordinatorNode.FreeTcpPort()}/");
        live.Prefixes.Add(liveUrl.ToString());
        live.Start();
        var served = Serve(live);
        using var admin = new AdminApiClient([refused[0], refused[1], liveUrl], apiKey: null);

        var answers = await Task.WhenAll(Enumerable.Range(0, 30).Select(i => admin.GetAsync($"/api/v1/tailnets/t{i}")));

        Assert.Equal(Enumerable.Range(0, 30).Select(i => $"/api/v1/tailnets/t{i}"), answers.Select(a => a.GetProperty("path").GetString()));
        // Once one answered, the next request starts there.
        Assert.Equal("/api/v1/tailnets/next", (await admin.GetAsync("/api/v1/tailnets/next")).GetProperty("path").GetString());
        live.Stop();
        await served;
    }

    [Fact]
    public async Task A_request_whose_last_try_reaches_no_one_reports_what_the_live_coordinator_said()
    {
        // After a kill: one coordinator answers 503 (the tailnet is still starting on it), the other two are
        // gone. The fifth and last attempt falls on a dead one, and its "connection refused" was all the caller
        // heard, as if no coordinator were up (a load test's end check reported exactly that at 50,000 nodes).
        using var live = new HttpListener();
        var liveUrl = new Uri($"http://127.0.0.1:{CoordinatorNode.FreeTcpPort()}/");
        live.Prefixes.Add(liveUrl.ToString());
        live.Start();
        var served = Serve(live, HttpStatusCode.ServiceUnavailable, _ => """{"code":"unavailable","message":"tailnet t0 is starting; retry shortly"}""");
        using var admin = new AdminApiClient([liveUrl, RefusedUrl(), RefusedUrl()], apiKey: null);

        var error = await Assert.ThrowsAsync<AdminApiError>(() => admin.GetAsync("/api/v1/tailnets/t0"));

        Assert.Equal(503, error.Status);
        Assert.Equal("unavailable", error.Code);
        Assert.StartsWith("tailnet t0 is starting; retry shortly (said " + liveUrl, error.Message);
        live.Stop();
        await served;
    }

    [Fact]
    public async Task With_two_coordinators_down_one_bad_answer_from_the_third_does_not_fail_the_call()
    {
        // The live coordinator is last in the list, so a request's walk reaches it on every third attempt. Its
        // first answer is garbled. Before, the walk had reached it once
        // in its five attempts, and the call failed with the dead nodes' "connection refused".
        using var flaky = new TcpListener(IPAddress.Loopback, 0);
        flaky.Start();
        var liveUrl = new Uri($"http://127.0.0.1:{((IPEndPoint)flaky.LocalEndpoint).Port}/");
        using var stop = new CancellationTokenSource();
        var served = ServeDroppingTheFirst(flaky, stop.Token);
        using var admin = new AdminApiClient([RefusedUrl(), RefusedUrl(), liveUrl], apiKey: null);

        var answer = await admin.GetAsync("/api/v1/tailnets/t0");

        Assert.Equal("/api/v1/tailnets/t0", answer.GetProperty("path").GetString());
        stop.Cancel();
        Assert.Equal(2, await served); // the garbled answer and the good one
    }

    /// <summary>A minimal HTTP/1.1 server: it garbles its first answer and answers the rest with their path; how many connections it took.</summary>
    private static async Task<int> ServeDroppingTheFirst(TcpListener listener, CancellationToken stop)
    {
        var connections = 0;
        while (true)
        {
            TcpClient client;
            try
            {
                client = await listener.AcceptTcpClientAsync(stop);
            }
            catch (OperationCanceledException)
            {
                return connections;
            }
            using (client)
            {
                connections++;
                var stream = client.GetStream();
                var head = new StringBuilder();
                var buffer = new byte[1024];
                while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    var read = await stream.ReadAsync(buffer, stop);
                    if (read == 0) break;
                    head.Append(Encoding.ASCII.GetString(buffer, 0, read));
                }
                if (connections == 1)
                {
                    // Garbled (a proxy's hiccup, a half-written answer): HttpClient does not retry this by itself.
                    await stream.WriteAsync("HTTP/1.1 2\r\n\r\n"u8.ToArray(), stop);
                    continue;
                }
                var body = Encoding.UTF8.GetBytes($"{{\"path\":\"{head.ToString().Split(' ')[1]}\"}}");
                await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n"), stop);
                await stream.WriteAsync(body, stop);
            }
        }
    }

    /// <summary>A loopback URL whose port nothing listens on: connecting is refused.</summary>
    private static Uri RefusedUrl() => new($"http://127.0.0.1:{CoordinatorNode.FreeTcpPort()}/");

    /// <summary>Answers every request with its own path, as JSON.</summary>
    private static Task Serve(HttpListener listener) => Serve(listener, HttpStatusCode.OK, path => $"{{\"path\":\"{path}\"}}");

    /// <summary>Answers every request with <paramref name="status"/> and the JSON <paramref name="answer"/> gives for its path.</summary>
    private static async Task Serve(HttpListener listener, HttpStatusCode status, Func<string, string> answer)
    {
        while (listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            using var response = context.Response;
            response.StatusCode = (int)status;
            var body = Encoding.UTF8.GetBytes(answer(context.Request.Url!.AbsolutePath));
            response.ContentType = "application/json";
            await response.OutputStream.WriteAsync(body);
        }
    }
}
