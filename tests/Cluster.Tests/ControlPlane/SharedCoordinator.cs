using Akka.Actor;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>
/// One real coordinator (SQLite, gRPC on loopback) shared by a test class; every test makes its own
/// tailnets, so tests do not see each other. Housekeeping runs every second so that ephemeral
/// removal is observable quickly.
/// </summary>
public sealed class SharedCoordinator : IAsyncLifetime
{
    private TestStorage? _storage;

    public TestCoordinator Node { get; private set; } = null!;

    public HttpClient Http => Node.Http;

    public Uri Control => Node.Control;

    public async Task InitializeAsync()
    {
        _storage = TestStorage.NewSqlite();
        Node = await TestCoordinator.StartAsync(_storage, [new("Weft:Control:HousekeepingSeconds", "1")]);
    }

    public async Task DisposeAsync()
    {
        await Node.DisposeAsync();
        await _storage!.DisposeAsync();
    }

    /// <summary>A tailnet no other test uses.</summary>
    public async Task<string> NewTailnet(string prefix, int? ephemeralTimeoutSeconds = null)
    {
        var name = $"{prefix}-{Guid.NewGuid():N}"[..30];
        var tailnet = await Http.CreateTailnet(name);
        if (ephemeralTimeoutSeconds is { } seconds)
            await (await Http.PatchJson($"/api/v1/tailnets/{tailnet.Id}", new Dictionary<string, int> { ["ephemeralTimeoutSeconds"] = seconds }))
                .ReadAs<Contracts.Admin.TailnetResource>(System.Net.HttpStatusCode.OK);
        return tailnet.Id;
    }
}
