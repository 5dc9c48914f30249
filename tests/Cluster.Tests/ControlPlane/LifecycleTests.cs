using System.Net;
using Akka.Actor;
using Microsoft.Extensions.DependencyInjection;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>
/// Day two: entities idle, passivate, crash and restart under connected agents. After each, every
/// agent still hears every change, its netmap version is its device entity's, and presence is right.
/// </summary>
public class LifecycleTests
{
    private static ulong Incarnation(ulong version) => version >> 32;

    [Fact]
    public async Task Changes_after_idle_periods_reach_every_agent_though_their_device_entities_passivate()
    {
        // Passivation far shorter than the session's re-attach timer: the entities do passivate while
        // their agents are connected, and only the sessions' watch brings them back.
        using var tuning = TestTuning.With("akka.cluster.sharding.passivate-idle-entity-after = 2s");
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [tuning.Setting, new("Weft:Control:SessionReattachSeconds", "120")]);
        await using var agents = new AgentSystem();
        var (tailnet, a, b) = await TwoAgents(node, agents, "idle");
        var first = await node.Http.GetStream(tailnet, a.DeviceId!);

        for (var round = 1; round <= 2; round++)
        {
            await Task.Delay(TimeSpan.FromSeconds(6)); // idle, three times the passivation timeout
            var name = $"b-after-idle-{round}";
            await Rename(node, tailnet, b, name);

            await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Name == name, $"b renamed to {name}");
            await b.WaitForNetMap(v => v.Self!.Name == name, $"its own new name {name}");
            foreach (var agent in new[] { a, b })
                Assert.True((await node.Http.GetDevice(tailnet, agent.DeviceId!)).Online, $"{agent.Hostname} is connected, so online");
        }

        // The entities did passivate (a new incarnation each time), and the agents hold their entities' versions.
        var last = await AgentMatchesItsEntity(node, tailnet, a);
        Assert.True(Incarnation(last.Version) > Incarnation(first.Version), $"a's device entity never passivated: v{first.Version} then v{last.Version}");
        await AgentMatchesItsEntity(node, tailnet, b);
    }

    [Fact]
    public async Task Sessions_keep_their_device_entities_awake_and_the_devices_online()
    {
        using var tuning = TestTuning.With("akka.cluster.sharding.passivate-idle-entity-after = 3s");
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [tuning.Setting, new("Weft:Control:SessionReattachSeconds", "1")]);
        await using var agents = new AgentSystem();
        var (tailnet, a, b) = await TwoAgents(node, agents, "awake");
        var before = await AgentMatchesItsEntity(node, tailnet, a);

        await Task.Delay(TimeSpan.FromSeconds(8));

        var after = await node.Http.GetStream(tailnet, a.DeviceId!);
        Assert.Equal(Incarnation(before.Version), Incarnation(after.Version)); // re-attached every second: never idle, never passivated
        Assert.True(after.Connected);
        Assert.All((await node.Http.ListDevices(tailnet)).Devices, d => Assert.True(d.Online, $"{d.Name} online"));
        await Rename(node, tailnet, b, "b-awake");
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Name == "b-awake", "b renamed");
    }

    [Fact]
    public async Task A_tailnet_entity_that_restarts_sends_every_change_and_relearns_who_is_online()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:SessionReattachSeconds", "1")]);
        await using var agents = new AgentSystem();
        var (tailnet, a, b) = await TwoAgents(node, agents, "tailnet-restart");

        // A crash restarts the entity in place: it recovers from the journal and knows nobody is online.
        Entity(node, "tailnet", tailnet).Tell(Kill.Instance);
        await Rename(node, tailnet, b, "b-after-restart");

        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Name == "b-after-restart", "the rename made right after the restart");
        await b.WaitForNetMap(v => v.Self!.Name == "b-after-restart", "its own new name");
        await Eventually.Until(async () => (await node.Http.ListDevices(tailnet)).Devices.Select(d => d.Online).ToList(),
            online => online.All(o => o), "both devices online again");
        await AgentMatchesItsEntity(node, tailnet, a);
        await AgentMatchesItsEntity(node, tailnet, b);
    }

    [Fact]
    public async Task A_device_entity_that_restarts_is_attached_again_at_once()
    {
        await using var storage = TestStorage.NewSqlite();
        // A re-attach timer far too slow to hide a lost link: only the entity's own request brings it back.
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:SessionReattachSeconds", "300")]);
        await using var agents = new AgentSystem();
        var (tailnet, a, b) = await TwoAgents(node, agents, "device-restart");
        var before = await AgentMatchesItsEntity(node, tailnet, a);

        Entity(node, "device", a.DeviceId!).Tell(Kill.Instance);
        await Rename(node, tailnet, b, "b-after-crash");

        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Name == "b-after-crash", "the rename made right after the crash");
        var after = await AgentMatchesItsEntity(node, tailnet, a);
        Assert.True(Incarnation(after.Version) > Incarnation(before.Version));
        Assert.True((await node.Http.GetDevice(tailnet, a.DeviceId!)).Online);
    }

    private static async Task<(string Tailnet, TestAgent A, TestAgent B)> TwoAgents(TestCoordinator node, AgentSystem agents, string prefix)
    {
        var tailnet = (await node.Http.CreateTailnet($"{prefix}-{Guid.NewGuid():N}"[..30])).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        var a = TestAgent.Start(agents, node.Control, "a", key, endpoints: ["198.18.7.1:41641"]);
        var b = TestAgent.Start(agents, node.Control, "b", key, endpoints: ["198.18.7.2:41641"]);
        await a.WaitForPeers(b);
        await b.WaitForPeers(a);
        return (tailnet, a, b);
    }

    private static async Task Rename(TestCoordinator node, string tailnet, TestAgent agent, string name) =>
        await (await node.Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/{agent.DeviceId}/rename", new { name })).ReadAs<DeviceResource>(HttpStatusCode.OK);

    /// <summary>An entity of a shard region on this node, by path (a test's way to crash one).</summary>
    private static ActorSelection Entity(TestCoordinator node, string typeName, string entityId) =>
        node.Services.GetRequiredService<ActorSystem>().ActorSelection($"/system/sharding/{typeName}/*/{entityId}");

    /// <summary>Waits until the agent holds exactly the version its device entity is at, with a session attached.</summary>
    private static async Task<DeviceStreamResource> AgentMatchesItsEntity(TestCoordinator node, string tailnet, TestAgent agent) =>
        await Eventually.Until(() => node.Http.GetStream(tailnet, agent.DeviceId!),
            stream => stream.Connected && !stream.AwaitingFullMap && stream.Version == agent.View.Version,
            $"{agent.Hostname}'s netmap at its entity's version (agent at v{agent.View.Version})");
}
