using System.Collections.Immutable;
using System.Net;
using Akka.Actor;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;
using Weft.Contracts.Control;
using Weft.NodeAgent.Control;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>Coordinators restart and clusters have several nodes: agents carry on, and nothing acknowledged is lost.</summary>
public class ResilienceTests
{
    /// <summary>What a peer looks like apart from presence (online, last seen), which a restart legitimately changes.</summary>
    private static string Stable(NetMapView view) => string.Join("\n", view.Peers.Values.Select(p =>
        $"{p.Id} {p.Name} {Convert.ToHexString(p.NodeKey.Span)} {string.Join(",", p.Addresses)} {string.Join(",", p.Endpoints)} {p.HomeRelay} {p.KeyExpiry}"))
        + $"\nself {view.Self!.Id} {string.Join(",", view.Self.Addresses)} {view.Self.Status}";

    [Fact]
    public async Task After_a_coordinator_restart_agents_reconnect_to_identical_state_and_versions_keep_growing()
    {
        await using var storage = TestStorage.NewSqlite();
        var controlPort = CoordinatorNode.FreeTcpPort();
        KeyValuePair<string, string?>[] fixedControl = [new("Weft:Control:Listen", $"http://127.0.0.1:{controlPort}")];
        var control = new Uri($"http://127.0.0.1:{controlPort}/");
        await using var agents = new AgentSystem();

        var node = await TestCoordinator.StartAsync(storage, fixedControl);
        TestAgent[] members;
        string tailnet;
        string devicesBefore;
        try
        {
            tailnet = (await node.Http.CreateTailnet($"restart-{Guid.NewGuid():N}"[..20])).Id;
            var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
            members = Enumerable.Range(1, 3).Select(i => TestAgent.Start(agents, control, $"m{i}", key, endpoints: [$"198.18.2.{i}:41641"])).ToArray();
            for (var i = 0; i < 3; i++) await members[i].WaitForPeers(members.Where((_, j) => j != i).ToArray());
            members[0].Client.Tell(new SetEndpoints(["198.18.3.1:1000"], 2));
            foreach (var peer in members[1..])
                await peer.WaitForNetMap(v => v.Peers[members[0].DeviceId!].Endpoints.SequenceEqual(["198.18.3.1:1000"]), "the moved endpoint");
            foreach (var member in members)
                await member.WaitForNetMap(v => v.Peers.Values.All(p => p.Endpoints.Count > 0), "every peer's endpoints");
            devicesBefore = await node.Http.DevicesSnapshot(tailnet);
        }
        finally
        {
            await node.DisposeAsync();
        }
        var before = members.Select(m => (Stable(m.View), m.View.Version)).ToArray();
        foreach (var member in members) await member.WaitForState(ControlState.Connecting);

        node = await TestCoordinator.StartAsync(storage, fixedControl);
        await using (node)
        {
            for (var i = 0; i < members.Length; i++)
            {
                await members[i].WaitForState(ControlState.Running);
                var view = await members[i].WaitForNetMap(v => v.Version > before[i].Version, "a netmap newer than before the restart");
                Assert.Equal(before[i].Item1, Stable(view));
            }
            Assert.Equal(devicesBefore, await node.Http.DevicesSnapshot(tailnet));

            // The streams go on: a change after the restart arrives as a delta continuing the new version.
            var versions = members.Select(m => m.View.Version).ToArray();
            members[1].Client.Tell(new SetEndpoints(["198.18.3.2:2000"], 0));
            var moved = members[1].DeviceId!;
            foreach (var peer in new[] { members[0], members[2] })
            {
                var view = await peer.WaitForNetMap(v => v.Peers[moved].Endpoints.SequenceEqual(["198.18.3.2:2000"]), "the endpoint moved after the restart");
                Assert.True(view.Version > versions[Array.IndexOf(members, peer)]);
            }
        }
    }

    [SkippableFact]
    public async Task Agents_on_different_nodes_of_a_two_node_cluster_see_each_others_changes()
    {
        await using var cluster = await TestCluster.StartAsync(2);
        var (apiA, apiB) = (cluster.Api(0), cluster.Api(1));
        var (controlA, controlB) = (cluster.Nodes[0].Control, cluster.Nodes[1].Control);
        await using var agents = new AgentSystem();

        // Several tailnets, so that entities land on both nodes whatever the shard allocation.
        for (var round = 0; round < 3; round++)
        {
            var tailnet = (await apiA.CreateTailnet($"pair-{round}-{Guid.NewGuid():N}"[..20])).Id;
            var key = (await apiB.CreateAuthKey(tailnet, reusable: true)).Key;
            var onA = TestAgent.Start(agents, controlA, $"on-a-{round}", key);
            var onB = TestAgent.Start(agents, controlB, $"on-b-{round}", key);
            await onA.WaitForPeers(onB);
            await onB.WaitForPeers(onA);

            onA.Client.Tell(new SetEndpoints([$"198.18.4.{round}:100"], 1));
            onB.Client.Tell(new SetEndpoints([$"198.18.5.{round}:200"], 2));
            await onB.WaitForNetMap(v => v.Peers[onA.DeviceId!].Endpoints.SequenceEqual([$"198.18.4.{round}:100"]), "A's endpoint");
            await onA.WaitForNetMap(v => v.Peers[onB.DeviceId!].Endpoints.SequenceEqual([$"198.18.5.{round}:200"]), "B's endpoint");

            // An admin change through either node reaches both agents.
            Assert.Equal(HttpStatusCode.NoContent, (await apiB.DeleteAsync($"/api/v1/tailnets/{tailnet}/devices/{onA.DeviceId}")).StatusCode);
            await onB.WaitForNetMap(v => v.Peers.IsEmpty, "A gone");
            await onA.WaitForState(ControlState.NeedsLogin, ControlErrorCodes.DeviceDeleted);
        }
    }

    [Fact]
    public async Task An_agent_fails_over_to_the_next_coordinator_url()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet($"failover-{Guid.NewGuid():N}"[..20])).Id;
        var key = (await node.Http.CreateAuthKey(tailnet)).Key;
        var dead = new Uri($"http://127.0.0.1:{CoordinatorNode.FreeTcpPort()}/");

        var agent = TestAgent.Start(agents, [dead, node.Control], "roamer", key);

        await agent.WaitForState(ControlState.Running);
        Assert.Equal(node.Control.ToString(), (await agent.Status()).Coordinator);
    }

    [Fact]
    public async Task An_agent_that_meets_a_coordinator_of_another_protocol_version_tries_the_others_instead_of_stopping()
    {
        // A rolling upgrade: the first coordinator of the agent's list already speaks the next protocol version.
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var later = await LaterVersionCoordinator.StartAsync();
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet($"versions-{Guid.NewGuid():N}"[..20])).Id;
        var key = (await node.Http.CreateAuthKey(tailnet)).Key;
        var states = new System.Collections.Concurrent.ConcurrentQueue<ControlStateChanged>();

        var agent = TestAgent.Start(agents, [later.Url, node.Control], "upgrading", key);
        agent.OnStateChanged = states.Enqueue;

        await agent.WaitForState(ControlState.Running);
        Assert.Equal(node.Control.ToString(), (await agent.Status()).Coordinator);
        Assert.True(later.Asked > 0, "the agent never dialled the coordinator of the later version");
        Assert.DoesNotContain(states, s => s.State == ControlState.NeedsLogin);
    }

    /// <summary>A coordinator of the next protocol version: it answers the key request, and nothing else.</summary>
    private sealed class LaterVersionCoordinator : Weft.Contracts.Control.Coordinator.CoordinatorBase, IAsyncDisposable
    {
        private WebApplication _app = null!;
        private int _asked;

        public Uri Url { get; private set; } = null!;

        public int Asked => Volatile.Read(ref _asked);

        public static async Task<LaterVersionCoordinator> StartAsync()
        {
            var stub = new LaterVersionCoordinator();
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(System.Net.IPAddress.Loopback, 0, listen => listen.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http2));
            builder.Services.AddGrpc();
            builder.Services.AddSingleton(stub);
            stub._app = builder.Build();
            stub._app.MapGrpcService<LaterVersionCoordinator>();
            await stub._app.StartAsync();
            var address = stub._app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
                .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses.Single();
            stub.Url = new Uri(address.Replace("[::1]", "127.0.0.1") + "/");
            return stub;
        }

        public override Task<Weft.Contracts.Control.ServerKeyResponse> GetServerKey(Weft.Contracts.Control.ServerKeyRequest request, Grpc.Core.ServerCallContext context)
        {
            Interlocked.Increment(ref _asked);
            return Task.FromResult(new Weft.Contracts.Control.ServerKeyResponse
            {
                ProtocolVersion = Weft.Contracts.Control.ControlProtocol.Version + 1,
                PublicKey = Google.Protobuf.ByteString.CopyFrom(new byte[32]),
            });
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }

    [Fact]
    public async Task An_agent_refuses_a_coordinator_whose_key_changed_and_recovers_when_the_right_one_answers()
    {
        await using var agents = new AgentSystem();
        await using var storage = TestStorage.NewSqlite();
        await using var otherStorage = TestStorage.NewSqlite();
        using var real = Contracts.Keys.Curve25519PrivateKey.Generate();
        using var impostorKey = Contracts.Keys.Curve25519PrivateKey.Generate();
        var port = CoordinatorNode.FreeTcpPort();
        KeyValuePair<string, string?>[] At(Contracts.Keys.Curve25519PrivateKey key) =>
            [new("Weft:Control:Listen", $"http://127.0.0.1:{port}"), new("Weft:Control:PrivateKey", key.ToBase64())];

        string authKey, tailnet;
        await using (var first = await TestCoordinator.StartAsync(storage, At(real)))
        {
            tailnet = (await first.Http.CreateTailnet($"pinned-{Guid.NewGuid():N}"[..20])).Id;
            authKey = (await first.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        }
        var store = new MemoryAgentStateStore();
        store.Save(store.Load() with { CoordinatorKey = real.PublicKey.ToHex() }); // an agent that knew the real coordinator

        TestAgent agent;
        await using (var impostor = await TestCoordinator.StartAsync(otherStorage, At(impostorKey)))
        {
            agent = TestAgent.Start(agents, [new Uri($"http://127.0.0.1:{port}/")], "careful", authKey, store: store);
            await agent.WaitForState(ControlState.Connecting, ControlErrorCodes.CoordinatorKeyChanged);
            Assert.Contains("refusing it and trying again", agent.State.Detail);
            Assert.Empty((await impostor.Http.ListDevices((await impostor.Http.CreateTailnet("impostors-own")).Id)).Devices);
        }

        await using var back = await TestCoordinator.StartAsync(storage, At(real));
        await agent.WaitForState(ControlState.Running);
        Assert.Single((await back.Http.ListDevices(tailnet)).Devices);
    }
}
