using System.Net.Http.Headers;
using System.Text.Json;
using Weft.Cluster.Cli;
using Weft.Contracts.Admin;

namespace Weft.ClusterLab;

/// <summary>
/// N coordinator processes on loopback sharing one PostgreSQL database, each listing every node as
/// a seed (a restarted node rejoins whichever of the others is up) and every node's control URL as
/// a public URL (agents learn where else to go). Nodes are disposed, processes killed, with the cluster.
/// </summary>
public sealed class CoordinatorCluster : IAsyncDisposable
{
    private readonly List<CoordinatorNode> _nodes;

    private CoordinatorCluster(List<CoordinatorNode> nodes) => _nodes = nodes;

    public IReadOnlyList<CoordinatorNode> Nodes => _nodes;

    public IReadOnlyList<Uri> ControlUrls => _nodes.Select(n => n.Control).ToList();

    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);

    /// <param name="settings">Extra <c>Weft__…</c> environment settings for every node.</param>
    public static async Task<CoordinatorCluster> StartAsync(int count, string postgresConnectionString, IReadOnlyDictionary<string, string>? settings = null)
    {
        var akkaPorts = Enumerable.Range(0, count).Select(_ => CoordinatorNode.FreeTcpPort()).ToList();
        var seeds = akkaPorts.Select(p => $"127.0.0.1:{p}").ToList();
        var nodes = new List<CoordinatorNode>();
        var environment = new Dictionary<string, string>
        {
            ["Weft__Storage__Provider"] = "Postgres",
            ["Weft__Storage__ConnectionString"] = postgresConnectionString,
            ["Weft__Cluster__Secret"] = LabKeys.ClusterSecret,
            // Every simulated device of the lab connects from 127.0.0.1; a real fleet connects from many addresses.
            ["Weft__Control__ConnectsPerSecondPerAddress"] = "0",
            // The lab's admin calls (its writer, its checks) all come from 127.0.0.1 too.
            ["Weft__Api__RequestsPerSecondPerAddress"] = "0",
            ["Weft__Api__RequestsPerSecondPerKey"] = "0",
            ["Weft__Control__RegistrationsPerSecondPerAuthKey"] = "0",
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string>()) environment[key] = value;
        for (var i = 0; i < count; i++) nodes.Add(new CoordinatorNode($"node{i + 1}", seeds, environment, akkaPorts[i]));
        for (var i = 0; i < count; i++) environment[$"Weft__Control__PublicUrls__{i}"] = nodes[i].Control.ToString();

        var cluster = new CoordinatorCluster(nodes);
        try
        {
            // The first seed forms the cluster; the others join it.
            nodes[0].Start();
            await nodes[0].WhenReady(StartTimeout);
            foreach (var node in nodes.Skip(1)) node.Start();
            foreach (var node in nodes.Skip(1)) await node.WhenReady(StartTimeout);
            foreach (var node in nodes) await cluster.WaitForMembers(node, count);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>An operator's admin client that fails over between the given nodes (all of them by default).</summary>
    public AdminApiClient Admin(params CoordinatorNode[] via) =>
        new((via.Length > 0 ? via : _nodes.ToArray()).Select(n => n.Api).ToList(), LabKeys.OperatorKey);

    /// <summary>An HTTP client on one node's admin API, with the operator key (no retries: what this node answers).</summary>
    public static HttpClient Http(CoordinatorNode node)
    {
        var client = new HttpClient { BaseAddress = node.Api, Timeout = TimeSpan.FromSeconds(30) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", LabKeys.OperatorKey);
        return client;
    }

    /// <summary>What <paramref name="observer"/> reports of the cluster, or null when it does not answer.</summary>
    public static async Task<HealthReport?> Health(CoordinatorNode observer)
    {
        try
        {
            using var http = new HttpClient { BaseAddress = observer.Api, Timeout = TimeSpan.FromSeconds(2) };
            var text = await http.GetStringAsync("/healthz");
            return JsonSerializer.Deserialize<HealthReport>(text, AdminJson.Options);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
        {
            return null;
        }
    }

    public static async Task<ReadinessReport?> Readiness(CoordinatorNode node)
    {
        try
        {
            using var http = new HttpClient { BaseAddress = node.Api, Timeout = TimeSpan.FromSeconds(5) };
            using var response = await http.GetAsync("/healthz/ready");
            return JsonSerializer.Deserialize<ReadinessReport>(await response.Content.ReadAsStringAsync(), AdminJson.Options);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
        {
            return null;
        }
    }

    /// <summary>Waits until <paramref name="observer"/> sees exactly <paramref name="up"/> reachable Up members.</summary>
    public async Task WaitForMembers(CoordinatorNode observer, int up, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? StartTimeout);
        HealthReport? last = null;
        while (DateTime.UtcNow < deadline)
        {
            last = await Health(observer);
            if (last is not null && last.Members.Count(m => m.Status == "up" && m.Reachable) == up && last.Members.Count == up) return;
            await Task.Delay(200);
        }
        throw new TimeoutException($"{observer.Name} never saw {up} up members; last: {(last is null ? "no answer" : string.Join(", ", last.Members.Select(m => $"{m.Address} {m.Status} reachable={m.Reachable}")))}");
    }

    /// <summary>Waits until no node it is asked of lists <paramref name="gone"/> any more (downed and removed); returns when.</summary>
    public async Task<DateTime> WaitUntilRemoved(CoordinatorNode gone, IEnumerable<CoordinatorNode> observers, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
        var watching = observers.ToList();
        while (DateTime.UtcNow < deadline)
        {
            var reports = await Task.WhenAll(watching.Select(Health));
            if (reports.All(r => r is not null && r.Members.All(m => m.Address != gone.Address || m.Status is "down" or "removed")))
                return DateTime.UtcNow;
            await Task.Delay(100);
        }
        throw new TimeoutException($"{gone.Name} was never downed");
    }

    /// <summary>Every node's output, for a failing test's report.</summary>
    public string Outputs() => string.Join("\n", _nodes.Select(n => $"===== {n.Name}\n{n.Output}"));

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes) await node.DisposeAsync();
    }
}
