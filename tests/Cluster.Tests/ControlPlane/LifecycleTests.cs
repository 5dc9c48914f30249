using System.Net;
using Akka.Actor;
using Microsoft.Extensions.DependencyInjection;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;
using Weft.NodeAgent.Control;

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
        await using var node = await TestCoordinator.StartAsync(storage, [tuning.Setting, new("Weft:Control:SessionReattachSeconds", "120"), new("Weft:Control:PresenceTimeoutSeconds", "360")]);
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
    public async Task Machine_index_entities_stop_after_registration_and_a_later_registration_still_finds_the_binding()
    {
        // The index is read at registration only: an entity per connected device would be memory for nothing.
        using var tuning = TestTuning.With("weft.sharding.machine-passivate-idle-after = 1s");
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [tuning.Setting]);
        await using var agents = new AgentSystem();
        var (tailnet, a, b) = await TwoAgents(node, agents, "machine-idle");

        await Eventually.Until(() => LiveEntities(node, "machine"), count => count == 0, "every machine index entity stopped");
        Assert.True(await LiveEntities(node, "device") >= 2, "the device entities stay: their sessions hold them");
        await Rename(node, tailnet, b, "b-machines-idle");
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Name == "b-machines-idle", "b renamed while the index sleeps");

        // A's machine joining another tailnet is refused: the lookup recovered the stopped entity's binding.
        var elsewhere = (await node.Http.CreateTailnet($"machine-other-{Guid.NewGuid():N}"[..30])).Id;
        var otherKey = (await node.Http.CreateAuthKey(elsewhere)).Key;
        var deviceId = a.DeviceId!;
        await a.Stop();
        var moved = TestAgent.Start(agents, [node.Control], "a", otherKey, store: a.Store, forceReauth: true);
        await moved.WaitForState(ControlState.NeedsLogin, ControlErrorCodes.MachineInOtherTailnet);
        await moved.Stop();

        // And re-authorising in its own tailnet finds the same device.
        await Eventually.Until(() => LiveEntities(node, "machine"), count => count == 0, "the machine index entity stopped again");
        var back = TestAgent.Start(agents, [node.Control], "a", (await node.Http.CreateAuthKey(tailnet)).Key, store: a.Store, forceReauth: true);
        await back.WaitForState(ControlState.Running);
        Assert.Equal(deviceId, back.DeviceId);
        await b.WaitForPeers(back);
    }

    [Fact]
    public async Task A_reconnecting_agent_names_its_device_so_its_stopped_machine_index_entity_stays_stopped()
    {
        // A reconnect used to look its machine key up first: in a failover storm that recovered one index
        // entity from the journal per agent. It names its device now, which its tailnet checks instead.
        using var tuning = TestTuning.With("weft.sharding.machine-passivate-idle-after = 5s");
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [tuning.Setting]);
        await using var agents = new AgentSystem();
        var (tailnet, a, b) = await TwoAgents(node, agents, "resume-idle");
        var deviceId = a.DeviceId!;
        await Eventually.Until(() => LiveEntities(node, "machine"), count => count == 0, "every machine index entity stopped");

        await a.Stop();
        var back = TestAgent.Start(agents, [node.Control], "a", authKey: null, store: a.Store, endpoints: ["198.18.7.1:41641"]);
        await back.WaitForState(ControlState.Running);

        // Checked at once: an entity recovered by this registration would live 5 s.
        Assert.Equal(0, await LiveEntities(node, "machine"));
        Assert.Equal(deviceId, back.DeviceId);
        await back.WaitForPeers(b);
        await Rename(node, tailnet, back, "a-resumed");
        await b.WaitForNetMap(v => v.Peers[deviceId].Name == "a-resumed", "the resumed device renamed");
    }

    [Fact]
    public async Task Sessions_that_crash_end_their_streams_and_the_agents_come_back_through_new_ones_to_current_netmaps()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var (tailnet, a, b) = await TwoAgents(node, agents, "session-crash");
        var before = await Eventually.Until(() => SessionPaths(node), paths => paths.Count == 2, "both agents' sessions");

        // A crashed session is stopped, never restarted blank under a live stream: its stream ends, and each
        // agent reconnects, registers its machine again and resumes from its version.
        node.Services.GetRequiredService<ActorSystem>().ActorSelection("/user/sessions/*").Tell(Kill.Instance);
        await Eventually.Until(() => SessionPaths(node), paths => paths.Count == 2 && !paths.Overlaps(before), "two new sessions, none of the crashed ones");

        await Rename(node, tailnet, b, "b-after-session-crash");
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Name == "b-after-session-crash", "b renamed after the crash");
        await b.WaitForNetMap(v => v.Self!.Name == "b-after-session-crash", "its own new name");
        await AgentMatchesItsEntity(node, tailnet, a);
        await AgentMatchesItsEntity(node, tailnet, b);
        await Eventually.Until(async () => (await node.Http.ListDevices(tailnet)).Devices.Select(d => d.Online).ToList(),
            online => online.All(o => o), "both devices online");
        Assert.Equal(0, a.VersionsBackwards);
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
    public async Task Endpoints_are_soft_state_that_a_restarted_tailnet_entity_relearns_from_the_connected_sessions()
    {
        await using var storage = TestStorage.NewSqlite();
        // A re-attach timer too slow to help: only the resync's request to report again brings the endpoints back.
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:SessionReattachSeconds", "300"), new("Weft:Control:PresenceTimeoutSeconds", "900")]);
        await using var agents = new AgentSystem();
        var (tailnet, a, b) = await TwoAgents(node, agents, "soft-endpoints");
        var storedBefore = JournalManifests(storage, tailnet);

        // Many changes, and not one journal write for them.
        for (var port = 42000; port < 42020; port++) b.Client.Tell(new SetEndpoints([$"198.18.7.22:{port}"], 0));
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Endpoints.SequenceEqual(["198.18.7.22:42019"]), "b's last endpoint");
        Assert.Equal(["198.18.7.22:42019"], (await node.Http.GetDevice(tailnet, b.DeviceId!)).Endpoints);
        Assert.Equal(storedBefore, JournalManifests(storage, tailnet));
        Assert.DoesNotContain("tn.device-endpoints", storedBefore); // nor were the agents' first reports

        // A new incarnation recovers without them, and the connected sessions report them again.
        Entity(node, "tailnet", tailnet).Tell(Kill.Instance);
        await Eventually.Until(async () => (await node.Http.GetDevice(tailnet, b.DeviceId!)).Endpoints,
            endpoints => endpoints.SequenceEqual(["198.18.7.22:42019"]), "b's endpoints re-learned by the new incarnation");
        await Eventually.Until(async () => (await node.Http.GetDevice(tailnet, a.DeviceId!)).Endpoints,
            endpoints => endpoints.SequenceEqual(["198.18.7.1:41641"]), "a's endpoints re-learned by the new incarnation");
        Assert.False((await node.Http.GetDevice(tailnet, b.DeviceId!)).EndpointsUnknown);
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Endpoints.SequenceEqual(["198.18.7.22:42019"]), "b's endpoint after the restart");
        await b.WaitForNetMap(v => v.Peers[a.DeviceId!].Endpoints.SequenceEqual(["198.18.7.1:41641"]), "a's endpoint after the restart");
        // Presence comes back with them, long before the 300 s re-attach timer would bring it, and before
        // the full maps go out: a's map from the new incarnation shows b online.
        await Eventually.Until(async () => (await node.Http.ListDevices(tailnet)).Devices.Select(d => d.Online).ToList(),
            online => online.All(o => o), "both devices online again", TimeSpan.FromSeconds(30));
        await AgentMatchesItsEntity(node, tailnet, a);
        Assert.True(a.View.Peers[b.DeviceId!].Online, "b is online in a's map from the new incarnation");

        // And a change after the restart still goes out at once.
        b.Client.Tell(new SetEndpoints(["198.18.7.23:42100"], 0));
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Endpoints.SequenceEqual(["198.18.7.23:42100"]), "b's endpoint changed after the restart");
        await AgentMatchesItsEntity(node, tailnet, a);
        Assert.Equal(storedBefore, JournalManifests(storage, tailnet));
    }

    [Fact]
    public async Task Endpoints_outlive_a_passivated_device_entity_and_then_a_restarted_tailnet_entity()
    {
        // The device entities passivate (the sessions bring them back at once, with what their agents
        // reported), and then the tailnet entity restarts without any endpoint: it must re-learn every
        // one from the device entities' new incarnations, with no agent moving and no re-attach timer.
        using var tuning = TestTuning.With("akka.cluster.sharding.passivate-idle-entity-after = 2s");
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage,
            [tuning.Setting, new("Weft:Control:SessionReattachSeconds", "300"), new("Weft:Control:PresenceTimeoutSeconds", "900")]);
        await using var agents = new AgentSystem();
        var (tailnet, a, b) = await TwoAgents(node, agents, "passivated-endpoints");
        b.Client.Tell(new SetEndpoints(["198.18.7.22:42000"], 0));
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Endpoints.SequenceEqual(["198.18.7.22:42000"]), "b's endpoint");
        var first = await node.Http.GetStream(tailnet, b.DeviceId!);

        await Task.Delay(TimeSpan.FromSeconds(6)); // idle, three times the passivation timeout
        // A new incarnation once the session has re-attached it (until then it holds no stream: version 0).
        await Eventually.Until(async () => await node.Http.GetStream(tailnet, b.DeviceId!),
            stream => Incarnation(stream.Version) > Incarnation(first.Version), $"b's device entity passivated and re-attached (it was v{first.Version})");

        Entity(node, "tailnet", tailnet).Tell(Kill.Instance);
        await Eventually.Until(async () => await node.Http.GetDevice(tailnet, b.DeviceId!),
            device => device.Endpoints.SequenceEqual(["198.18.7.22:42000"]) && !device.EndpointsUnknown, "b's endpoint re-learned by the new incarnation");
        await Eventually.Until(async () => await node.Http.GetDevice(tailnet, a.DeviceId!),
            device => device.Endpoints.SequenceEqual(["198.18.7.1:41641"]) && !device.EndpointsUnknown, "a's endpoint re-learned by the new incarnation");
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Endpoints.SequenceEqual(["198.18.7.22:42000"]) && !v.Peers[b.DeviceId!].EndpointsUnknown,
            "b's endpoint in a's map after the restart");
        await AgentMatchesItsEntity(node, tailnet, a);
        await AgentMatchesItsEntity(node, tailnet, b);
    }

    [Fact]
    public async Task Endpoints_an_agents_data_plane_found_survive_a_restart_of_its_control_client_and_then_of_its_entities()
    {
        await using var storage = TestStorage.NewSqlite();
        // No relays: no netcheck after the first, so nothing but the hand-over can tell the new incarnation.
        // (With relays, the next STUN probe, 20-26 s later, would tell it, and the device was unknown until then.)
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Relay:Embedded", "false")]);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet($"found-endpoints-{Guid.NewGuid():N}"[..30])).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        // As the daemon runs: the control client is started with no endpoints of its own. The data plane's
        // netcheck finds them (here its static ones) and hands them over.
        using var a = TestAgent.Start(agents, [node.Control], "a", key, tunnels: true, tune: o => o with { Endpoints = [] });
        using var b = TestAgent.Start(agents, node.Control, "b", key, endpoints: ["198.18.7.2:41641"]);
        var found = $"127.0.0.1:{a.Device!.ListenPort}";
        await b.WaitForNetMap(v => v.Peers.TryGetValue(a.DeviceId!, out var peer) && peer.Endpoints.Contains(found), "a's endpoint, found by its data plane");
        var discoBefore = b.View.Peers[a.DeviceId!].DiscoKey;
        var states = new List<ControlState>();
        a.OnStateChanged = changed => { lock (states) states.Add(changed.State); };

        // The control client crashes. Its new incarnation starts from the options (no endpoints), keeps the
        // disco key, and opens a new stream: a new session, which knows only what this stream reports.
        a.Client.Tell(Kill.Instance);
        await Eventually.Until(() => { lock (states) return states.SkipWhile(s => s == ControlState.Running).Contains(ControlState.Running); },
            "a's new stream registered");
        await b.WaitForNetMap(v => v.Peers[a.DeviceId!].Online, "a online again");
        Assert.Equal(discoBefore, b.View.Peers[a.DeviceId!].DiscoKey);
        var attached = await AgentMatchesItsEntity(node, tailnet, a);

        // Then the coordinator forgets what the old stream reported, as a move or the loss of a node makes
        // it do: the device entity stops (the new session attaches a new incarnation with what it knows) and
        // the tailnet entity restarts (it asks the device entities to report their endpoints again).
        Entity(node, "device", a.DeviceId!).Tell(PoisonPill.Instance);
        await Eventually.Until(() => node.Http.GetStream(tailnet, a.DeviceId!),
            stream => stream.Connected && Incarnation(stream.Version) > Incarnation(attached.Version), "a new incarnation of a's device entity, attached");
        Entity(node, "tailnet", tailnet).Tell(Kill.Instance);

        // The found endpoint is still known to the coordinator and to b: the new incarnation of the control
        // client was told it, though the machine never roamed.
        await Eventually.Until(async () => await node.Http.GetDevice(tailnet, a.DeviceId!),
            device => device.Endpoints.Contains(found) && !device.EndpointsUnknown, "a's found endpoint, known after the restarts");
        await b.WaitForNetMap(v => v.Peers[a.DeviceId!].Endpoints.Contains(found) && !v.Peers[a.DeviceId!].EndpointsUnknown, "a's found endpoint in b's map");
    }

    [Fact]
    public async Task A_change_stored_by_a_tailnet_entity_that_crashed_before_sending_it_still_reaches_every_agent()
    {
        await using var storage = TestStorage.NewSqlite();
        // A long coalescing window: a change made soon after a fan-out waits for the window's end.
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:FanOutCoalesceMilliseconds", "5000")]);
        await using var agents = new AgentSystem();
        var (tailnet, a, b) = await TwoAgents(node, agents, "crash-before-send");
        await AgentMatchesItsEntity(node, tailnet, a);
        var entity = await Entity(node, "tailnet", tailnet).ResolveOne(TimeSpan.FromSeconds(10));
        // A first rename goes out (at once, or at the end of a window that the agents' joining opened),
        // and its fan-out opens a window.
        await entity.Ask<object>(new RenameDevice(tailnet, b.DeviceId!, "b-renamed-first"), TimeSpan.FromSeconds(10));
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Name == "b-renamed-first", "the first rename");

        // The second rename is written within that window, and the entity dies before the window's end
        // sends it to anyone (as on a node killed mid-write). Nothing else changes afterwards that could
        // carry it along. The Kill goes as soon as the write is acknowledged: a Kill that came before the
        // write would lose the rename itself (nothing acknowledged is lost, which is what this test is not about).
        var renamed = await entity.Ask<object>(new RenameDevice(tailnet, b.DeviceId!, "b-renamed-before-the-crash"), TimeSpan.FromSeconds(10));
        entity.Tell(Kill.Instance);
        Assert.IsNotType<Weft.Cluster.Persistence.Rejection>(renamed);

        await Eventually.Until(async () => (await node.Http.GetDevice(tailnet, b.DeviceId!)).Name, name => name == "b-renamed-before-the-crash", "the rename stored");
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Name == "b-renamed-before-the-crash", "the rename its tailnet stored before crashing");
        await b.WaitForNetMap(v => v.Self!.Name == "b-renamed-before-the-crash", "its own new name");
        await AgentMatchesItsEntity(node, tailnet, a);
        Assert.Equal(0, a.VersionsBackwards);
    }

    [Fact]
    public async Task Deleted_and_unknown_tailnets_stop_their_entities_and_a_restarted_coordinator_does_not_start_them_again()
    {
        await using var storage = TestStorage.NewSqlite();
        KeyValuePair<string, string?>[] quickHousekeeping = [new("Weft:Control:HousekeepingSeconds", "1")];
        string kept, deleted;
        const string unknown = "tn_neverexisted";
        await using (var node = await TestCoordinator.StartAsync(storage, quickHousekeeping))
        {
            kept = (await node.Http.CreateTailnet("kept")).Id;
            deleted = (await node.Http.CreateTailnet("deleted")).Id;
            Assert.True(await IsRunning(node, deleted));
            Assert.Equal(HttpStatusCode.NoContent, (await node.Http.DeleteAsync($"/api/v1/tailnets/{deleted}")).StatusCode);
            // A read of a tailnet that never existed wakes an entity for its id, which answers that it does not exist.
            await (await node.Http.GetAsync($"/api/v1/tailnets/{unknown}/devices")).ReadError(HttpStatusCode.NotFound);

            // At their next housekeeping tick both stop; the live tailnet runs on.
            await Eventually.Until(async () => await IsRunning(node, deleted) || await IsRunning(node, unknown), running => !running,
                "the deleted and the unknown tailnets' entities stopped");
            Assert.True(await IsRunning(node, kept));
        }

        // Remembered entities start again with the coordinator: the live tailnet does, the other two do not.
        await using var restarted = await TestCoordinator.StartAsync(storage, quickHousekeeping);
        await Eventually.Until(() => IsRunning(restarted, kept), running => running, "the live tailnet's entity started again on its own");
        Assert.False(await IsRunning(restarted, deleted));
        Assert.False(await IsRunning(restarted, unknown));
        // Still deleted, and still unknown, when asked.
        await (await restarted.Http.GetAsync($"/api/v1/tailnets/{deleted}/devices")).ReadError(HttpStatusCode.NotFound);
        await (await restarted.Http.GetAsync($"/api/v1/tailnets/{unknown}/devices")).ReadError(HttpStatusCode.NotFound);
    }

    private static async Task<bool> IsRunning(TestCoordinator node, string tailnet)
    {
        try
        {
            await Entity(node, "tailnet", tailnet).ResolveOne(TimeSpan.FromSeconds(2));
            return true;
        }
        catch (ActorNotFoundException)
        {
            return false;
        }
    }

    [Fact]
    public async Task A_tailnet_entity_that_restarts_keeps_its_connected_ephemeral_devices()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:HousekeepingSeconds", "1")]);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet($"ephemeral-restart-{Guid.NewGuid():N}"[..30])).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true, ephemeral: true)).Key;
        var a = TestAgent.Start(agents, node.Control, "a", key);
        var b = TestAgent.Start(agents, node.Control, "b", key);
        await a.WaitForPeers(b);
        // Short only now: on a busy machine an agent may take longer than a second to subscribe after it
        // registers, and an ephemeral device that has not subscribed within the timeout is removed.
        await (await node.Http.PatchJson($"/api/v1/tailnets/{tailnet}", new Dictionary<string, int> { ["ephemeralTimeoutSeconds"] = 1 })).ReadAs<TailnetResource>(HttpStatusCode.OK);

        // Stopped, then started again by the next message, the entity recovers knowing nobody is online;
        // it must not take that silence for a disconnect.
        Entity(node, "tailnet", tailnet).Tell(Kill.Instance);
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        await node.Http.GetTailnet(tailnet);
        await Task.Delay(TimeSpan.FromSeconds(5)); // five ephemeral timeouts, five housekeeping rounds

        Assert.Equal(2, (await node.Http.ListDevices(tailnet)).Devices.Count);
        await Rename(node, tailnet, b, "b-still-here");
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Name == "b-still-here", "b renamed, still a peer");
    }

    [Fact]
    public async Task A_device_entity_that_stops_or_crashes_is_attached_again_at_once()
    {
        await using var storage = TestStorage.NewSqlite();
        // A re-attach timer far too slow to hide a lost link: only the session's watch, or the entity's own request, brings it back.
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:SessionReattachSeconds", "300"), new("Weft:Control:PresenceTimeoutSeconds", "900")]);
        await using var agents = new AgentSystem();
        var (tailnet, a, b) = await TwoAgents(node, agents, "device-restart");
        var before = await AgentMatchesItsEntity(node, tailnet, a);

        // Stopped: a new incarnation starts when the session's watch sees the old one go.
        Entity(node, "device", a.DeviceId!).Tell(Kill.Instance);
        await Rename(node, tailnet, b, "b-after-stop");
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Name == "b-after-stop", "the rename made right after the stop");
        var afterStop = await AgentMatchesItsEntity(node, tailnet, a);
        Assert.True(Incarnation(afterStop.Version) > Incarnation(before.Version));

        // Crashed on bad input: restarted in place (the same reference, so the watch sees nothing), it asks its session to attach again.
        node.Services.GetRequiredService<Akka.Hosting.IRequiredActor<Weft.Cluster.Devices.DeviceActor>>().ActorRef
            .Tell(new Weft.Cluster.Devices.PeerChanges(a.DeviceId!, [0xff, 0xff, 0xff], false, null, null));
        await Rename(node, tailnet, b, "b-after-crash");
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Name == "b-after-crash", "the rename made right after the crash");
        var afterCrash = await AgentMatchesItsEntity(node, tailnet, a);
        Assert.True(Incarnation(afterCrash.Version) > Incarnation(afterStop.Version));
        Assert.True((await node.Http.GetDevice(tailnet, a.DeviceId!)).Online);
    }

    [Fact]
    public async Task A_quiet_agent_on_a_busy_stream_is_asked_whether_it_is_there_and_keeps_its_stream()
    {
        // Keepalives ten times faster than the protocol's: silent for 3 s is gone. (With 0.5 s, and so
        // 1.5 s of silence, an agent in a test process stalled by the tests running beside it was once
        // dropped in a clean run.)
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:KeepAliveSeconds", "1")]);
        await using var agents = new AgentSystem();
        var (tailnet, a, b) = await TwoAgents(node, agents, "busy-stream");
        var lost = new List<ControlStateChanged>();
        a.OnStateChanged = changed => { lock (lost) lost.Add(changed); };

        // b's endpoint moves ten times a second for five seconds: a's stream always carries deltas, and a,
        // which has nothing to say, says nothing unless it is asked. A coordinator that pinged only a
        // stream it had sent nothing on would never ask, and would drop a after 3 s of its silence.
        for (var step = 1; step <= 50; step++)
        {
            b.Client.Tell(new SetEndpoints([$"198.18.7.2:{40000 + step}"], 0));
            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Endpoints.Contains("198.18.7.2:40050"), "b's last endpoint");

        lock (lost) Assert.True(lost.Count == 0, "a lost its stream: " + string.Join("; ", lost.Select(l => $"{l.State} {l.Code} {l.Detail}")));
        await AgentMatchesItsEntity(node, tailnet, a);
    }

    [Fact]
    public async Task An_agent_whose_wall_clock_steps_forward_keeps_its_stream_and_hears_every_change()
    {
        // The agent checks its stream every second, and the coordinator, with nothing to say, pings it
        // every 10 s. The agent's wall clock jumps ten minutes every half second for 3 s, as on a VM paused
        // and resumed over and over, so at least two checks come after a jump with nothing heard since.
        // The silence check and the netmap verification run on the monotonic clock, so the stream does
        // not seem silent: it stays, and changes keep arriving on it.
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet($"wall-step-{Guid.NewGuid():N}"[..30])).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        var clock = new SteppedWallClock();
        using var a = TestAgent.Start(agents, [node.Control], "a", key, endpoints: ["198.18.7.1:41641"],
            tune: o => o with { Clock = clock, VerifyAfter = TimeSpan.FromSeconds(30), AnswerTimeout = TimeSpan.FromSeconds(2) });
        using var b = TestAgent.Start(agents, node.Control, "b", key, endpoints: ["198.18.7.2:41641"]);
        await a.WaitForPeers(b);
        await a.WaitForState(ControlState.Running);
        var changes = new List<ControlStateChanged>();
        a.OnStateChanged = changed => { lock (changes) changes.Add(changed); };

        for (var jump = 0; jump < 6; jump++)
        {
            clock.Step(TimeSpan.FromMinutes(10));
            await Task.Delay(TimeSpan.FromMilliseconds(500));
        }
        b.Client.Tell(new SetEndpoints(["198.18.7.2:41700"], 0));
        await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Endpoints.Contains("198.18.7.2:41700"), "b's new endpoint");

        lock (changes) Assert.True(changes.Count == 0, "a's stream ended: " + string.Join("; ", changes.Select(c => $"{c.State} {c.Code} {c.Detail}")));
        await AgentMatchesItsEntity(node, tailnet, a);
    }

    [Fact]
    public async Task An_agent_that_stops_answering_is_dropped_with_a_reason()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:KeepAliveSeconds", "0.5")]);
        var tailnet = (await node.Http.CreateTailnet($"hung-agent-{Guid.NewGuid():N}"[..30])).Id;
        var key = (await node.Http.CreateAuthKey(tailnet)).Key;
        await using var stream = await RawControlStream.OpenAsync(node.Control);
        using var machine = Curve25519PrivateKey.Generate();
        using var nodeKey = Curve25519PrivateKey.Generate();
        await stream.Handshake(machine);
        Assert.Equal(RegisterResult.Types.Status.Authorized, (await stream.Register(machine, nodeKey, key)).Status);
        await stream.Send(new ClientMessage { Subscribe = new Subscribe { LastVersion = 0 } });

        // From here on it reads but never answers, as a hung agent whose connection stays open would.
        var heard = new List<ServerMessage>();
        var ended = await ReadUntilTheEnd(stream, heard).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.True(ended);
        Assert.Contains(heard, m => m.BodyCase == ServerMessage.BodyOneofCase.Ping);
        var error = Assert.Single(heard, m => m.BodyCase == ServerMessage.BodyOneofCase.Error).Error;
        Assert.Equal(ControlErrorCodes.Unavailable, error.Code);
        Assert.Contains("nothing heard from the agent", error.Message);
    }

    private static async Task<bool> ReadUntilTheEnd(RawControlStream stream, List<ServerMessage> heard)
    {
        try
        {
            while (true) heard.Add(ServerMessage.Parser.ParseFrom(stream.Transport!.Open(await stream.ReadRaw())));
        }
        catch (Exception e) when (e is EndOfStreamException or Grpc.Core.RpcException)
        {
            return true;
        }
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

    /// <summary>The manifests of what the tailnet's entity has journaled, in order.</summary>
    private static List<string> JournalManifests(TestStorage storage, string tailnet)
    {
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={storage.SqliteDatabase};Mode=ReadOnly");
        connection.Open();
        using var query = connection.CreateCommand();
        query.CommandText = "SELECT manifest FROM journal WHERE persistence_id = $id ORDER BY sequence_number";
        query.Parameters.AddWithValue("$id", TailnetActor.PersistenceIdOf(tailnet));
        using var reader = query.ExecuteReader();
        var manifests = new List<string>();
        while (reader.Read()) manifests.Add(reader.GetString(0));
        return manifests;
    }

    /// <summary>The agent sessions running on the node now (each answers an Identify).</summary>
    private static async Task<HashSet<string>> SessionPaths(TestCoordinator node)
    {
        var system = node.Services.GetRequiredService<ActorSystem>();
        using var inbox = Inbox.Create(system);
        system.ActorSelection("/user/sessions/*").Tell(new Identify(null), inbox.Receiver);
        var paths = new HashSet<string>();
        while (true)
        {
            try
            {
                if (await inbox.ReceiveAsync(TimeSpan.FromMilliseconds(500)) is ActorIdentity { Subject: { } session }) paths.Add(session.Path.ToString());
            }
            catch (TimeoutException)
            {
                return paths;
            }
        }
    }

    /// <summary>How many entities of a type run on the node now.</summary>
    private static async Task<int> LiveEntities(TestCoordinator node, string typeName)
    {
        var region = Akka.Cluster.Sharding.ClusterSharding.Get(node.Services.GetRequiredService<ActorSystem>()).ShardRegion(typeName);
        var state = await region.Ask<Akka.Cluster.Sharding.CurrentShardRegionState>(Akka.Cluster.Sharding.GetShardRegionState.Instance, TimeSpan.FromSeconds(10));
        return state.Shards.Sum(shard => shard.EntityIds.Count);
    }

    /// <summary>An entity of a shard region on this node, by path (a test's way to crash one).</summary>
    private static ActorSelection Entity(TestCoordinator node, string typeName, string entityId) =>
        node.Services.GetRequiredService<ActorSystem>().ActorSelection($"/system/sharding/{typeName}/*/{entityId}");

    /// <summary>Waits until the agent holds exactly the version its device entity is at, with a session attached.</summary>
    private static async Task<DeviceStreamResource> AgentMatchesItsEntity(TestCoordinator node, string tailnet, TestAgent agent) =>
        await Eventually.Until(() => node.Http.GetStream(tailnet, agent.DeviceId!),
            stream => stream.Connected && !stream.AwaitingFullMap && stream.Version == agent.View.Version,
            $"{agent.Hostname}'s netmap at its entity's version (agent at v{agent.View.Version})");
}
