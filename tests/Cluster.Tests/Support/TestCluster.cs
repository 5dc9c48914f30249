namespace Weft.Cluster.Tests.Support;

/// <summary>
/// A lab cluster of coordinator processes on a fresh database of the test PostgreSQL server (skips
/// without one), with an operator-authenticated HTTP client per node. Everything goes when disposed.
/// </summary>
public sealed class TestCluster : IAsyncDisposable
{
    private readonly TestStorage.PostgresStorage _storage;
    private readonly List<HttpClient> _clients;

    private TestCluster(TestStorage.PostgresStorage storage, CoordinatorCluster cluster)
    {
        _storage = storage;
        Lab = cluster;
        _clients = cluster.Nodes.Select(CoordinatorCluster.Http).ToList();
    }

    public CoordinatorCluster Lab { get; }

    public IReadOnlyList<CoordinatorNode> Nodes => Lab.Nodes;

    /// <summary>The admin API of node <paramref name="index"/>, answering as that node does (no retries, no failover).</summary>
    public HttpClient Api(int index) => _clients[index];

    public static async Task<TestCluster> StartAsync(int nodes, IReadOnlyDictionary<string, string>? settings = null)
    {
        var storage = (TestStorage.PostgresStorage)await TestStorage.NewPostgresAsync();
        try
        {
            return new TestCluster(storage, await CoordinatorCluster.StartAsync(nodes, storage.ConnectionString, settings));
        }
        catch
        {
            await storage.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var client in _clients) client.Dispose();
        await Lab.DisposeAsync();
        await _storage.DisposeAsync();
    }
}
