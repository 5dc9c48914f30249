namespace Weft.Cluster.Tests.Support;

/// <summary>Two coordinator processes on loopback sharing a fresh PostgreSQL database, the first the seed. Skips without PostgreSQL.</summary>
public sealed class TwoNodeCluster : IAsyncDisposable
{
    private readonly TestStorage _storage;

    private TwoNodeCluster(TestStorage storage, CoordinatorProcess a, CoordinatorProcess b, HttpClient apiA, HttpClient apiB)
    {
        _storage = storage;
        NodeA = a;
        NodeB = b;
        ApiA = apiA;
        ApiB = apiB;
    }

    public CoordinatorProcess NodeA { get; }
    public CoordinatorProcess NodeB { get; }

    /// <summary>Operator-authenticated admin API clients of each node.</summary>
    public HttpClient ApiA { get; }
    public HttpClient ApiB { get; }

    public static async Task<TwoNodeCluster> StartAsync()
    {
        var storage = (TestStorage.PostgresStorage)await TestStorage.NewPostgresAsync();
        var env = new Dictionary<string, string> { ["Weft__Storage__Provider"] = "Postgres", ["Weft__Storage__ConnectionString"] = storage.ConnectionString };
        var portA = CoordinatorProcess.FreeTcpPort();
        var portB = CoordinatorProcess.FreeTcpPort();
        var seed = $"127.0.0.1:{portA}";
        CoordinatorProcess? a = null, b = null;
        try
        {
            a = CoordinatorProcess.Start(portA, [seed], env);
            b = CoordinatorProcess.Start(portB, [seed], env);
            var apiA = TestCoordinator.NewClient(await a.WhenReady(TimeSpan.FromSeconds(90)), TestCoordinator.OperatorKey);
            var apiB = TestCoordinator.NewClient(await b.WhenReady(TimeSpan.FromSeconds(90)), TestCoordinator.OperatorKey);
            return new TwoNodeCluster(storage, a, b, apiA, apiB);
        }
        catch
        {
            if (a is not null) await a.DisposeAsync();
            if (b is not null) await b.DisposeAsync();
            await storage.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        ApiA.Dispose();
        ApiB.Dispose();
        await NodeA.DisposeAsync();
        await NodeB.DisposeAsync();
        await _storage.DisposeAsync();
    }
}
