using System.Net;
using System.Text.Json;

namespace Weft.Cluster.Tests.Support;

/// <summary>
/// The one call of the Kubernetes API that pod discovery makes (list the pods of a namespace by label),
/// answered for pods on loopback, each with its own management port, plus one pending pod that must be
/// ignored. It refuses a request without the expected service-account token, as the real API would.
/// </summary>
public sealed class FakeKubernetesApi : IAsyncDisposable
{
    private readonly HttpListener _listener;
    private readonly Task _serving;
    private int _lookups;

    private FakeKubernetesApi(HttpListener listener, Uri url, string space, string selector, string token, IReadOnlyList<int> managementPorts)
    {
        _listener = listener;
        Url = url;
        _serving = Task.Run(() => Serve(space, selector, token, managementPorts));
    }

    public Uri Url { get; }

    public int Lookups => Volatile.Read(ref _lookups);

    public static Task<FakeKubernetesApi> StartAsync(string space, string selector, string token, IReadOnlyList<int> managementPorts)
    {
        var port = CoordinatorNode.FreeTcpPort();
        var url = new Uri($"http://127.0.0.1:{port}/");
        var listener = new HttpListener();
        listener.Prefixes.Add(url.ToString());
        listener.Start();
        return Task.FromResult(new FakeKubernetesApi(listener, url, space, selector, token, managementPorts));
    }

    private async Task Serve(string space, string selector, string token, IReadOnlyList<int> managementPorts)
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
            {
                return;
            }
            using var response = context.Response;
            var request = context.Request;
            if (request.Headers["Authorization"] != $"Bearer {token}")
            {
                response.StatusCode = 401;
                continue;
            }
            if (request.Url?.AbsolutePath != $"/api/v1/namespaces/{space}/pods" || request.QueryString["labelSelector"] != selector)
            {
                response.StatusCode = 404;
                continue;
            }
            Interlocked.Increment(ref _lookups);
            var pods = managementPorts.Select((port, i) => Pod($"weft-{i}", "Running", "127.0.0.1", port))
                .Append(Pod("weft-3", "Pending", null, 1)).ToList();
            var body = JsonSerializer.SerializeToUtf8Bytes(new { kind = "PodList", apiVersion = "v1", items = pods });
            response.ContentType = "application/json";
            await response.OutputStream.WriteAsync(body);
        }
    }

    private static object Pod(string name, string phase, string? ip, int managementPort) => new
    {
        metadata = new { name, labels = new Dictionary<string, string> { ["app.kubernetes.io/name"] = "weft" } },
        spec = new { containers = new[] { new { name = "weft", ports = new object[] { new { name = "api", containerPort = 8080 }, new { name = "management", containerPort = managementPort } } } } },
        status = ip is null ? (object)new { phase } : new { phase, podIP = ip },
    };

    public async ValueTask DisposeAsync()
    {
        _listener.Stop();
        _listener.Close();
        await _serving;
    }
}
