using System.Net;
using Akka.Actor;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Keys;
using Weft.Contracts.Control;
using Weft.NodeAgent.Control;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>
/// The agent's own actors crash and restart while it carries traffic: real engines on loopback UDP,
/// a real coordinator. After each restart the tunnels still carry packets, later netmap changes still
/// reach the engine, and the engine holds exactly the netmap's peers.
/// </summary>
public class AgentRestartTests(SharedCoordinator coordinator) : IClassFixture<SharedCoordinator>
{
    [Fact]
    public async Task Restarting_the_data_plane_or_the_control_client_keeps_traffic_flowing_and_orphans_no_peer()
    {
        await using var agents = new AgentSystem();
        var (tailnet, key, agentA, agentB) = await TwoConnectedAgents(agents, "restarts");
        using var a = agentA;
        using var b = agentB;
        await Passes(b, a);

        // The data plane fails: it restarts, learns the netmap and the key again, and its tunnels resume from the engine.
        a.DataPlane!.Tell(Kill.Instance);
        await Passes(a, b);
        await Passes(b, a);
        using var c = TestAgent.Start(agents, [coordinator.Control], "c", key, tunnels: true);
        await a.WaitForPeers(b, c);
        await c.WaitForPeers(a, b); // c's own netmap too: Passes reads its address from it
        await EngineHoldsExactlyTheNetmapPeers(a);
        await Passes(a, c);

        // The control client fails: it restarts from its state, registers its watchers again and resumes its stream.
        a.Client.Tell(Kill.Instance);
        await a.WaitForState(ControlState.Running);
        await Passes(a, b);
        Assert.Equal(HttpStatusCode.NoContent, (await coordinator.Http.DeleteAsync($"/api/v1/tailnets/{tailnet}/devices/{c.DeviceId}")).StatusCode);
        await a.WaitForPeers(b);
        await EngineHoldsExactlyTheNetmapPeers(a); // c left the engine too: the data plane hears the new control client
        await Passes(b, a);
    }

    [Fact]
    public async Task Tunnels_that_fail_past_their_restart_limit_start_again_with_the_data_plane_and_later_netmaps_reach_the_engine()
    {
        await using var agents = new AgentSystem();
        var (_, key, agentA, agentB) = await TwoConnectedAgents(agents, "tunnels-give-up");
        using var a = agentA;
        using var b = agentB;

        // The TunnelSupervisor fails 11 times in a row: its parent restarts it 10 times, then stops it.
        var tunnelsPath = a.DataPlane!.Path / "tunnels";
        var first = await agents.System.ActorSelection(tunnelsPath).ResolveOne(TimeSpan.FromSeconds(5));
        for (var i = 0; i < 11; i++) first.Tell(Kill.Instance);

        // The data plane does not carry on without it: it restarts, and with it come new tunnels.
        var next = await Eventually.Until(async () =>
        {
            try { return await agents.System.ActorSelection(tunnelsPath).ResolveOne(TimeSpan.FromSeconds(1)); }
            catch (ActorNotFoundException) { return ActorRefs.Nobody; }
        }, found => !found.IsNobody() && !found.Equals(first), "a new TunnelSupervisor");
        Assert.NotEqual(first, next);

        // Later netmaps reach the engine: a new peer becomes a tunnel, and the old one still carries traffic.
        using var c = TestAgent.Start(agents, [coordinator.Control], "c", key, tunnels: true);
        await a.WaitForPeers(b, c);
        await c.WaitForPeers(a, b);
        await EngineHoldsExactlyTheNetmapPeers(a);
        await Passes(a, c);
        await Passes(b, a);
    }

    [Fact]
    public async Task A_restarted_control_client_hands_its_watchers_its_predecessors_netmap_never_the_older_cached_one()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("restart-cache");
        var key = (await coordinator.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        var cache = new FreezableNetMapCache();
        using var a = TestAgent.Start(agents, [coordinator.Control], "a", key, tune: o => o with { NetMapCache = cache });
        using var b = TestAgent.Start(agents, [coordinator.Control], "b", key);
        await a.WaitForPeers(b);
        await Eventually.Until(() => cache.Load() is { Peers.Count: 1 }, "a's cache holds b");

        // From here the cache keeps what it has: the write that would follow the next change has not
        // happened yet (it waits half a second) or failed. c joins; a's cache still says b alone.
        cache.Frozen = true;
        using var c = TestAgent.Start(agents, [coordinator.Control], "c", key);
        await a.WaitForPeers(b, c);
        var told = new List<object>();
        List<object> Told() { lock (told) return [.. told]; }
        a.Client.Tell(new WatchControl(agents.System.ActorOf(Props.Create(() => new WatcherRecorder(told)))));
        await Eventually.Until(() => Told().OfType<NetMapChanged>().Any(), "the watcher's first netmap");

        // The control client fails and restarts: it tells the watcher everything (its keys first)
        // again, and the netmap it tells is the one the watcher already had (c included), not the
        // cache's older one.
        a.Client.Tell(Kill.Instance);
        await Eventually.Until(() => Told().SkipWhile(m => m is not DiscoKeyChanged).Skip(1).SkipWhile(m => m is not DiscoKeyChanged).OfType<NetMapChanged>().Any(),
            "the netmap told again after the restart");
        await a.WaitForState(ControlState.Running);
        await a.WaitForPeers(b, c);
        Assert.All(Told().OfType<NetMapChanged>(), changed =>
            Assert.True(changed.View.Peers.ContainsKey(c.DeviceId!), $"a netmap v{changed.View.Version} without c reached a watcher"));
        Assert.Equal(0, a.VersionsBackwards);
    }

    [Fact]
    public async Task A_cache_write_that_outlasts_its_control_client_does_not_leave_an_older_netmap_on_disk_than_its_successor_wrote()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("restart-slow-cache");
        var key = (await coordinator.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        var cache = new SlowNetMapCache();
        using var a = TestAgent.Start(agents, [coordinator.Control], "a", key, tune: o => o with { NetMapCache = cache });
        using var b = TestAgent.Start(agents, [coordinator.Control], "b", key);
        await a.WaitForPeers(b);
        await Eventually.Until(() => cache.Load() is { Peers.Count: 1 }, "a's cache holds b");

        // The disk stalls on the next write: a's map with c, its writer blocked in the middle of it.
        cache.StallNext();
        using var c = TestAgent.Start(agents, [coordinator.Control], "c", key);
        await a.WaitForPeers(b, c);
        Assert.True(cache.Stalled.Wait(TimeSpan.FromSeconds(10)), "the write of the map with c started");
        // d joins, and the control client fails before (or after) its write is due: its successor writes the newest map.
        using var d = TestAgent.Start(agents, [coordinator.Control], "d", key);
        var newest = await a.WaitForPeers(b, c, d);
        a.Client.Tell(Kill.Instance);
        await a.WaitForState(ControlState.Running);
        await Task.Delay(1000); // the successor has had its chance to write the newest map beside the stalled write
        cache.Release();

        await Eventually.Until(() => cache.Load() is { Peers.Count: 3 }, "a's cache holds b, c and d");
        await Task.Delay(1000);
        var kept = cache.Load()!;
        Assert.Equal(3, kept.Peers.Count);
        Assert.True(kept.Version >= newest.Version, $"the cache went back to v{kept.Version} after v{newest.Version} was written");
        Assert.Equal(0, cache.Overlaps);
    }

    [Fact]
    public async Task A_restarted_control_client_keeps_its_disco_key_so_peers_keep_their_direct_path_and_no_new_key_goes_out()
    {
        await using var agents = new AgentSystem();
        var (_, _, agentA, agentB) = await TwoConnectedAgents(agents, "disco-kept");
        using var a = agentA;
        using var b = agentB;
        var direct = await Eventually.Until(() => RelayTests.PathStatusOf(a, b), path => path is { Kind: "direct" }, "a's direct path to b");
        var discoAsBSeesIt = b.View.Peers[a.DeviceId!].DiscoKey;
        var told = new List<object>();
        List<object> Told() { lock (told) return [.. told]; }
        a.Client.Tell(new WatchControl(agents.System.ActorOf(Props.Create(() => new WatcherRecorder(told)))));
        await Eventually.Until(() => Told().OfType<DiscoKeyChanged>().Any(), "the watcher told a's disco key");

        // The control client fails. Its successor is the same agent process: the same disco key, so the
        // path finders keep their proven path, and the coordinator has no new key to spread to the peers.
        a.Client.Tell(Kill.Instance);
        await Eventually.Until(() => Told().OfType<DiscoKeyChanged>().Count() >= 2, "the watcher told the disco key again after the restart");
        await a.WaitForState(ControlState.Running);
        await Passes(a, b);
        await Task.Delay(1000);
        Assert.Single(Told().OfType<DiscoKeyChanged>().Select(k => k.PrivateKeyHex).Distinct());
        Assert.Equal(discoAsBSeesIt, b.View.Peers[a.DeviceId!].DiscoKey);
        var after = await RelayTests.PathStatusOf(a, b);
        Assert.Equal(("direct", direct!.Since), (after!.Kind, after.Since));
    }

    [Fact]
    public async Task A_control_client_restarted_while_no_coordinator_answers_hands_new_watchers_the_relay_access_it_had()
    {
        // The agent's only coordinator stops, then its control client fails; a watcher that registers now (a
        // data plane restarted as well) must still get the relay map and ticket, or it opens no relay and the
        // peers reachable only through one stay cut off until a coordinator answers again.
        await using var storage = TestStorage.NewSqlite();
        var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet($"relay-kept-{Guid.NewGuid():N}"[..30])).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        using var a = TestAgent.Start(agents, [node.Control], "a", key);
        var access = await Eventually.Until(() => Task.FromResult(a.RelayAccess), held => held is not null, "a's relay access");
        await node.DisposeAsync();
        await a.WaitForState(ControlState.Connecting);

        a.Client.Tell(Kill.Instance);
        var told = new List<object>();
        List<object> Told() { lock (told) return [.. told]; }
        a.Client.Tell(new WatchControl(agents.System.ActorOf(Props.Create(() => new WatcherRecorder(told)))));
        await Eventually.Until(() => Told().OfType<ControlStateChanged>().Any(), "the new watcher told the control state");

        var handed = Assert.Single(Told().OfType<RelayAccessChanged>());
        Assert.Equal(access!.Ticket, handed.Ticket);
        Assert.Equal(access.Map, handed.Map);
    }

    [Fact]
    public async Task A_logout_under_way_when_the_control_client_fails_is_finished_by_its_successor_and_answered()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("logout-restart");
        var key = (await coordinator.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        using var a = TestAgent.Start(agents, [coordinator.Control], "a", key);
        await a.WaitForState(ControlState.Running);
        Assert.NotNull(a.DeviceId);

        // `weft-agent logout`: the logout goes out on the stream, and the control client fails before the
        // coordinator's answer comes back on it. The CLI still gets its answer, and the device is forgotten.
        var answer = a.Client.Ask<LogoutResult>(LogOut.Instance, TimeSpan.FromSeconds(30));
        a.Client.Tell(Kill.Instance);
        Assert.NotEmpty((await answer).Detail);
        await a.WaitForState(ControlState.NeedsLogin, ControlErrorCodes.LoggedOut);
        Assert.Null(a.DeviceId);
    }

    [Fact]
    public async Task An_agent_whose_configured_coordinator_is_gone_dials_the_ones_its_netmap_names_after_its_daemon_or_control_client_restarts()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("learned-coordinators");
        var key = (await coordinator.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        var store = new MemoryAgentStateStore();
        var cache = new FreezableNetMapCache();
        using (var first = TestAgent.Start(agents, [coordinator.Control], "a", key, store: store, tune: o => o with { NetMapCache = cache }))
        {
            await first.WaitForState(ControlState.Running);
            await Eventually.Until(() => cache.Load() is not null, "a's netmap cached");
            await first.Stop();
        }

        // The agent was set up with one coordinator, since retired; the cluster's last full map named the
        // one that serves now (its public URLs). The daemon starts again from its state and that cache.
        var named = cache.Load()!;
        named.Coordinators.Clear();
        named.Coordinators.Add(coordinator.Control.ToString());
        cache.Save(named);
        var retired = new Uri($"http://127.0.0.1:{Weft.ClusterLab.LoopbackPort.Free()}/");
        using var a = TestAgent.Start(agents, [retired], "a", key, store: store, tune: o => o with { NetMapCache = cache });
        await a.WaitForState(ControlState.Running);
        Assert.Equal(coordinator.Control, new Uri((await a.Status()).Coordinator!));

        // The control client fails: its successor starts from the options (the retired coordinator alone),
        // and still dials the one the netmap names. Its resumed stream brings no full map to name it again.
        var states = new List<ControlState>();
        a.OnStateChanged = changed => { lock (states) states.Add(changed.State); };
        a.Client.Tell(Kill.Instance);
        await Eventually.Until(() => { lock (states) return states.SkipWhile(s => s == ControlState.Running).Contains(ControlState.Running); },
            "running again after the restart");
        Assert.Equal(coordinator.Control, new Uri((await a.Status()).Coordinator!));
    }

    /// <summary>A netmap cache whose next write stalls until released (a slow disk), and that counts writes made at the same time.</summary>
    private sealed class SlowNetMapCache : INetMapCache
    {
        private NetMap? _map;
        private int _writing;
        private volatile bool _stallNext;
        private readonly ManualResetEventSlim _released = new(true);

        public ManualResetEventSlim Stalled { get; } = new(false);

        public int Overlaps;

        public void StallNext()
        {
            _released.Reset();
            _stallNext = true;
        }

        public void Release() => _released.Set();

        public NetMap? Load() => Volatile.Read(ref _map)?.Clone();

        public void Save(NetMap map)
        {
            if (Interlocked.Increment(ref _writing) > 1) Interlocked.Increment(ref Overlaps);
            try
            {
                var copy = map.Clone();
                if (_stallNext)
                {
                    _stallNext = false;
                    Stalled.Set();
                    _released.Wait(TimeSpan.FromSeconds(30));
                }
                Volatile.Write(ref _map, copy);
            }
            finally
            {
                Interlocked.Decrement(ref _writing);
            }
        }

        public void Delete() => Volatile.Write(ref _map, null);
    }

    /// <summary>A netmap cache that stops taking writes when told (a write not yet made, or a failing disk).</summary>
    private sealed class FreezableNetMapCache : INetMapCache
    {
        private NetMap? _map;

        public volatile bool Frozen;

        public NetMap? Load() => Volatile.Read(ref _map)?.Clone();

        public void Save(NetMap map)
        {
            if (!Frozen) Volatile.Write(ref _map, map.Clone());
        }

        public void Delete()
        {
            if (!Frozen) Volatile.Write(ref _map, null);
        }
    }

    /// <summary>Keeps everything a watcher of the control client is told, in order, in <paramref name="told"/> (locked).</summary>
    [Fact]
    public async Task A_device_deleted_while_its_agent_was_down_comes_back_as_a_new_device_whose_netmap_replaces_the_old_one()
    {
        await using var agents = new AgentSystem();
        var (tailnet, key, agentA, agentB) = await TwoConnectedAgents(agents, "new-identity");
        using var a = agentA;
        using var b = agentB;
        // b's endpoint changes carry a's netmap version past where a new device's entity starts.
        for (var i = 1; i <= 5; i++)
        {
            b.Client.Tell(new SetEndpoints([$"127.0.0.1:{b.Device!.ListenPort}", $"198.18.7.{i}:41641"], 0));
            await a.WaitForNetMap(v => v.Peers[b.DeviceId!].Endpoints.Contains($"198.18.7.{i}:41641"), $"b's endpoint change {i}");
        }
        var oldId = a.DeviceId!;
        var oldVersion = a.View.Version;

        // `weft-agent down`; an admin deletes the device meanwhile, so no stream tells the agent.
        a.Client.Tell(TakeDown.Instance);
        await a.WaitForState(ControlState.Stopped);
        Assert.Equal(HttpStatusCode.NoContent, (await coordinator.Http.DeleteAsync($"/api/v1/tailnets/{tailnet}/devices/{oldId}")).StatusCode);
        await b.WaitForNetMap(v => v.Peers.Count == 0, "a gone from b's netmap");

        // `weft-agent up --force-reauth --auth-key …`: a new device, whose entity's versions start low.
        a.Client.Tell(new LogIn(new ControlLogin([coordinator.Control], "a", null, key, true, default), Connect: true));
        var view = await a.WaitForNetMap(v => v.Self!.Id != oldId && v.Peers.ContainsKey(b.DeviceId!), "the new device's netmap, holding b");
        Assert.NotEqual(oldId, a.DeviceId);
        Assert.True(view.Version < oldVersion, $"the new device's map (v{view.Version}) must be older than the old one's (v{oldVersion}) for this to test anything");
        await Passes(a, b);
        await Passes(b, a);
    }

    [Fact]
    public async Task A_logged_out_agent_holds_no_netmap_and_does_not_bring_the_old_one_back_when_it_next_comes_up()
    {
        await using var agents = new AgentSystem();
        var (_, _, agentA, agentB) = await TwoConnectedAgents(agents, "forgotten-map");
        using var a = agentA;
        using var b = agentB;
        Assert.IsType<Weft.NodeAgent.Agent.PeerResolved>(await a.DataPlane!.Ask<object>(new Weft.NodeAgent.Agent.ResolvePeer("b"), TimeSpan.FromSeconds(5)));

        Assert.True((await a.Client.Ask<LogoutResult>(LogOut.Instance, TimeSpan.FromSeconds(30))).CoordinatorTold);
        await a.WaitForState(ControlState.NeedsLogin, ControlErrorCodes.LoggedOut);
        Assert.IsType<Weft.NodeAgent.Agent.PeerNotFound>(await a.DataPlane.Ask<object>(new Weft.NodeAgent.Agent.ResolvePeer("b"), TimeSpan.FromSeconds(5)));

        // `weft-agent up --tailnet elsewhere --login-server <one that does not answer>`: up, with no map of its own
        // yet. The old tailnet's peers, filter and routes must not come back meanwhile.
        a.Client.Tell(new LogIn(new ControlLogin([new Uri("http://127.0.0.1:9/")], "a", "elsewhere", null, false, default), Connect: true));
        await a.WaitForState(ControlState.Connecting);
        Assert.IsType<Weft.NodeAgent.Agent.PeerNotFound>(await a.DataPlane.Ask<object>(new Weft.NodeAgent.Agent.ResolvePeer("b"), TimeSpan.FromSeconds(5)));
        await Task.Delay(1000); // the data plane's and the path manager's children act on what they were told
        Assert.Empty(a.Device!.Peers);
        Assert.Empty((await a.DataPlane.Ask<Weft.NodeAgent.Paths.PathStatusReply>(Weft.NodeAgent.Paths.GetPathStatus.Instance, TimeSpan.FromSeconds(5))).Paths);
    }

    [Fact]
    public async Task A_login_to_another_coordinator_is_not_overtaken_by_a_dial_to_the_old_one_that_answers_late()
    {
        // `weft-agent up --login-server B` while the dial to A is still under way (A is slow to answer). A answers
        // first, after the switch: its connection belonged to the login given up on, and taking it sent B's login
        // to A and pinned A's key. Both stand-ins reach the same coordinator here; which one the agent is on tells.
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("late-dial");
        var key = (await coordinator.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        await using var oldServer = new SlowProxy(coordinator.Control, TimeSpan.FromSeconds(1.5));
        await using var newServer = new SlowProxy(coordinator.Control, TimeSpan.FromSeconds(4));
        var states = new System.Collections.Concurrent.ConcurrentQueue<ControlState>();
        using var a = TestAgent.Start(agents, [oldServer.Url], "a", key);
        a.OnStateChanged = changed => states.Enqueue(changed.State);
        await Eventually.Until(() => oldServer.Accepted > 0, "the dial to the old coordinator under way");
        a.Client.Tell(new LogIn(new ControlLogin([newServer.Url], "a", null, key, false, default), Connect: true));
        // The switch was made while the old dial was still out (else this proves nothing): nothing ran before it.
        Assert.DoesNotContain(ControlState.Running, states);

        await a.WaitForState(ControlState.Running);
        var status = await a.Status();
        Assert.Equal(newServer.Url.ToString().TrimEnd('/'), status.Coordinator?.TrimEnd('/'));
    }

    private sealed class WatcherRecorder : ReceiveActor
    {
        public WatcherRecorder(List<object> told) => ReceiveAny(message => { lock (told) told.Add(message); });
    }

    /// <summary>Agents a and b with tunnels, in a new tailnet (returned with its reusable key), each holding the other, a packet passed from a to b.</summary>
    private async Task<(string Tailnet, string Key, TestAgent A, TestAgent B)> TwoConnectedAgents(AgentSystem agents, string tailnetName)
    {
        var tailnet = await coordinator.NewTailnet(tailnetName);
        var key = (await coordinator.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        var a = TestAgent.Start(agents, [coordinator.Control], "a", key, tunnels: true);
        var b = TestAgent.Start(agents, [coordinator.Control], "b", key, tunnels: true);
        await a.WaitForPeers(b);
        await b.WaitForPeers(a);
        await Passes(a, b);
        return (tailnet, key, a, b);
    }

    /// <summary>A TCP segment of <paramref name="size"/> bytes (with DF set) from one agent's TUN reaches the other's, within 100 tries.</summary>
    internal static async Task Passes(TestAgent from, TestAgent to, int size = 40, string? context = null)
    {
        var source = from.View.Self!.Addresses[0];
        var destination = to.View.Self!.Addresses[0];
        for (var attempt = 0; attempt < 100; attempt++)
        {
            var packet = Packets.Tcp4(source, destination, 40000 + attempt, 22, size: size, dontFragment: true);
            from.Tun!.Inject(packet);
            using var wait = new CancellationTokenSource(TimeSpan.FromMilliseconds(400));
            try
            {
                while (true)
                {
                    var delivered = await to.Tun!.Delivered.ReadAsync(wait.Token);
                    if (delivered.AsSpan().SequenceEqual(packet)) return;
                }
            }
            catch (OperationCanceledException)
            {
                // not yet (a handshake on its way); send again
            }
        }
        Assert.Fail($"{from.Hostname} ({source}) never reached {to.Hostname} ({destination}) over the tunnel{(context is null ? "" : $" ({context})")}");
    }

    private static async Task EngineHoldsExactlyTheNetmapPeers(TestAgent agent) =>
        await Eventually.Until(() =>
        {
            var netmapKeys = agent.View.Peers.Values.Select(p => new Curve25519PublicKey(p.NodeKey.Span)).OrderBy(k => k.ToHex()).ToList();
            var engineKeys = agent.Device!.Peers.Keys.OrderBy(k => k.ToHex()).ToList();
            return netmapKeys.SequenceEqual(engineKeys);
        }, $"{agent.Hostname}'s engine peers equal its netmap peers");

    [Fact]
    public async Task A_command_that_waits_in_the_mailbox_of_an_actor_that_fails_is_not_undone_by_what_its_predecessor_hands_over()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("queued-commands");
        var key = (await coordinator.Http.CreateAuthKey(tailnet)).Key;
        using var a = TestAgent.Start(agents, [coordinator.Control], "a", key, tunnels: true);
        await a.WaitForState(ControlState.Running);

        // `weft-agent down` arrives while the control client fails (a Kill is handled in mailbox order, as a failure is):
        // the predecessor's hand-over says "up", and must not bring the agent back up behind the down.
        a.Client.Tell(Kill.Instance);
        a.Client.Tell(TakeDown.Instance);
        await Eventually.Until(a.Status, s => s.State == ControlState.Stopped, "down after the restart");
        await Task.Delay(1500);
        Assert.Equal(ControlState.Stopped, (await a.Status()).State);
        await a.WaitForState(ControlState.Stopped); // and its watchers (the data plane among them) were told so

        // `weft-agent up` while it fails again: it comes up.
        a.Client.Tell(Kill.Instance);
        a.Client.Tell(new LogIn(new ControlLogin([coordinator.Control], "a", null, null, false, default), Connect: true));
        await a.WaitForState(ControlState.Running);

        // `weft-agent set --exit-node` arrives while the data plane fails: the predecessor's older prefs must not replace it.
        var plane = a.DataPlane!;
        plane.Tell(Kill.Instance);
        plane.Tell(new Weft.NodeAgent.Agent.RoutingPrefs(AcceptRoutes: false, ExitNode: "exit-elsewhere"));
        await Task.Delay(1500);
        var routing = await plane.Ask<Weft.NodeAgent.Agent.RoutingStatus>(Weft.NodeAgent.Agent.GetRoutingStatus.Instance, TimeSpan.FromSeconds(5));
        Assert.Equal("exit-elsewhere", routing.ExitNode);
        Assert.NotNull(routing.ExitNodeProblem); // no such node in the netmap: internet traffic is dropped, not sent around it
    }

    [Fact]
    public async Task A_control_client_that_crashes_after_up_on_a_daemon_started_down_comes_back_up_not_down()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("started-down");
        var key = (await coordinator.Http.CreateAuthKey(tailnet)).Key;
        var store = new MemoryAgentStateStore();
        using (var registered = TestAgent.Start(agents, [coordinator.Control], "a", key, store: store))
        {
            await registered.WaitForState(ControlState.Running);
            await registered.Stop();
        }

        // The daemon starts again after `weft-agent down` (its prefs say not running): the control client starts stopped.
        using var a = TestAgent.Start(agents, [coordinator.Control], "a", null, store: store, tune: o => o with { StartStopped = true });
        await a.WaitForState(ControlState.Stopped);
        // `weft-agent up`.
        a.Client.Tell(new LogIn(new ControlLogin([coordinator.Control], "a", null, null, false, default), Connect: true));
        await a.WaitForState(ControlState.Running);

        // The control client crashes and its supervisor restarts it: it comes back up, as it was, not as the daemon started.
        var states = new System.Collections.Concurrent.ConcurrentQueue<ControlState>();
        a.OnStateChanged = changed => states.Enqueue(changed.State);
        a.Client.Tell(Kill.Instance);
        await Eventually.Until(() => states.Contains(ControlState.Connecting), "the restarted client dials again");
        await a.WaitForState(ControlState.Running);
        Assert.Equal(ControlState.Running, (await a.Status()).State);
    }

    [Fact]
    public async Task An_agent_whose_state_file_cannot_be_written_keeps_running_from_memory_and_a_restart_keeps_what_the_file_could_not_take()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("full-disk");
        var key = (await coordinator.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        var disk = new FillingDisk(new MemoryAgentStateStore());
        using var a = TestAgent.Start(agents, [coordinator.Control], "a", key, store: disk, tune: o => o with { StateRetryInterval = TimeSpan.FromSeconds(1) });
        await a.WaitForState(ControlState.Running);
        var device = a.DeviceId;
        var nodeKey = disk.Load().NodePrivateKey;
        var states = new System.Collections.Concurrent.ConcurrentQueue<ControlState>();
        a.OnStateChanged = changed => states.Enqueue(changed.State);

        // The disk fills up. The stream breaks again and again (more often than the supervisor allows restarts
        // in a minute): each registration finds its device written already and runs on.
        disk.Full = true;
        for (var i = 0; i < 12; i++)
        {
            states.Clear();
            a.Client.Tell(new Reconnect(After: TimeSpan.Zero));
            await Eventually.Until(() => states.SkipWhile(s => s != ControlState.Connecting).Contains(ControlState.Running), $"registered again after break {i + 1}");
        }

        // A node-key rotation needs its next key kept first: it is put off, and the key in use stays.
        var nodeKeyInUse = (await a.Status()).NodeKey;
        a.Client.Tell(RotateNodeKeyNow.Instance);
        await Eventually.Until(() => disk.Refused > 0, "the next key's write refused");
        await Task.Delay(TimeSpan.FromSeconds(1)); // a rotation asked for would be answered within this on loopback
        var status = await a.Status();
        Assert.Equal((ControlState.Running, nodeKeyInUse), (status.State, status.NodeKey));
        Assert.Equal(nodeKey, disk.Load().NodePrivateKey);
        // The stream breaks and the agent stays away longer than the retry's interval (a rolling deploy, a roam): the
        // retry comes while it is not registered, where nothing can be done with it. It must come again after.
        states.Clear();
        a.Client.Tell(new Reconnect(After: TimeSpan.FromSeconds(2.5)));
        await Eventually.Until(() => states.SkipWhile(s => s != ControlState.Connecting).Contains(ControlState.Running), "registered again after a slow reconnect");
        // The disk has room again: the rotation put off is tried again (its retry, not the key's due time) and done.
        disk.Full = false;
        await Eventually.Until(async () => (await a.Status()).NodeKey, key => key != nodeKeyInUse, "the rotation put off, done once the disk has room");
        await Eventually.Until(() => disk.Load().NodePrivateKey != nodeKey, "the rotated key written");
        nodeKey = disk.Load().NodePrivateKey;
        disk.Full = true;

        // `weft-agent logout` while the disk is full: the agent forgets the device in memory only. Then the
        // control client fails: its successor goes by what the file could not take (logged out), not by the
        // file (still the device), and writes it once the disk has room.
        var loggedOut = await a.Client.Ask<LogoutResult>(LogOut.Instance, TimeSpan.FromSeconds(30));
        Assert.True(loggedOut.CoordinatorTold);
        Assert.Equal(device, disk.Load().DeviceId);
        disk.Full = false;
        a.Client.Tell(Kill.Instance);
        await a.WaitForState(ControlState.NeedsLogin, ControlErrorCodes.LoggedOut);
        await Eventually.Until(() => disk.Load().DeviceId is null && disk.Load().NodePrivateKey != nodeKey, "the logout written once the disk has room");
        Assert.Equal(ControlState.NeedsLogin, (await a.Status()).State);
    }

    /// <summary>An agent's state on a disk that fills up: writes fail as the file system fails them, reads go on.</summary>
    private sealed class FillingDisk(IAgentStateStore inner) : IAgentStateStore
    {
        private int _refused;

        public volatile bool Full;

        public int Refused => Volatile.Read(ref _refused);

        public AgentState Load() => inner.Load();

        public void Save(AgentState state)
        {
            if (Full)
            {
                Interlocked.Increment(ref _refused);
                throw new IOException("No space left on device");
            }
            inner.Save(state);
        }
    }
}
