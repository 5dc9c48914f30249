using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Weft.Cluster.Machines;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Keys;

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

    /// <summary>What the machine index answers for <paramref name="machine"/>: its binding, or a rejection.</summary>
    public Task<object> MachineIndexEntry(Curve25519PublicKey machine) =>
        MachineIndex.Ask<object>(new LookupMachine(machine.ToHex()), TimeSpan.FromSeconds(5));

    /// <summary>
    /// Waits for a device's deletion to release its machine's binding, then binds it back: the index as it is
    /// while that release is still on its way from the tailnet, or after it was lost.
    /// </summary>
    public async Task HoldStaleBinding(Curve25519PublicKey machine, string tailnetId, string deviceId)
    {
        await Eventually.Until(() => MachineIndexEntry(machine), answer => answer is Rejection, "the deletion released the binding");
        Assert.IsType<MachineBinding>(await MachineIndex.Ask<object>(new BindMachine(machine.ToHex(), tailnetId, deviceId), TimeSpan.FromSeconds(5)));
    }

    private IActorRef MachineIndex => ActorRegistry.For(Node.Services.GetRequiredService<ActorSystem>()).Get<MachineIndexActor>();

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
