using System.Collections.Immutable;
using Akka.Actor;
using Weft.Contracts.Control;
using Weft.NodeAgent.Agent;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.WireGuard;

namespace Weft.ClusterLab;

/// <summary>
/// A real <see cref="ControlClient"/> (its own gRPC stream, Noise channel and netmap store) in a
/// test's agent actor system, under the agent's own <see cref="AgentSupervisor"/>, with a way to
/// wait for what it sees. With tunnels it also runs the real DataPlane on a WireGuard engine bound
/// to a loopback UDP port, with an in-memory TUN. Waits have a generous deadline and report what the
/// agent saw instead when it passes; they assert behaviour, not speed.
/// </summary>
public sealed class TestAgent : IDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(45);

    private readonly object _gate = new();
    private readonly List<(Func<bool> Condition, TaskCompletionSource Done)> _waiters = [];
    private readonly List<ServerMessage> _received = [];
    private NetMapView _view = NetMapView.Empty;
    private ControlStateChanged _state = new(ControlState.Connecting, null, "starting");
    private RelayAccessChanged? _relayAccess;
    private IActorRef _root = ActorRefs.Nobody;
    private ulong _highestVersion;
    private int _versionsBackwards;

    private TestAgent(string hostname, IAgentStateStore store)
    {
        Hostname = hostname;
        Store = store;
    }

    public string Hostname { get; }

    public IAgentStateStore Store { get; }

    public IActorRef Client { get; private set; } = ActorRefs.Nobody;

    /// <summary>The DataPlane actor, when the agent runs tunnels.</summary>
    public IActorRef? DataPlane { get; private set; }

    /// <summary>The WireGuard engine, when the agent runs tunnels.</summary>
    public WireGuardDevice? Device { get; private set; }

    public VirtualTun? Tun { get; private set; }

    /// <summary>With tunnels: what the data plane asked of the operating system (addresses, routes into the tunnel).</summary>
    public NoTunnelLink? Link { get; private set; }

    public NetMapView View { get { lock (_gate) return _view; } }

    /// <summary>The relay map and ticket the coordinator gave this agent (the latest), or null.</summary>
    public RelayAccessChanged? RelayAccess { get { lock (_gate) return _relayAccess; } }

    public ControlStateChanged State { get { lock (_gate) return _state; } }

    /// <summary>Every netmap and delta applied, in order.</summary>
    public IReadOnlyList<ServerMessage> Received { get { lock (_gate) return _received.ToList(); } }

    /// <summary>Called (on the watcher's thread) whenever the agent's control state changes.</summary>
    public Action<ControlStateChanged>? OnStateChanged { get; set; }

    /// <summary>How many times a netmap this agent applied had a lower version than one it applied before (must stay 0).</summary>
    public int VersionsBackwards { get { lock (_gate) return _versionsBackwards; } }

    public string? DeviceId => Store.Load().DeviceId;

    public static ActorSystem NewSystem() =>
        Weft.NodeAgent.Agent.AgentActorSystem.Create("agents");

    public static TestAgent Start(
        ActorSystem system, IReadOnlyList<Uri> coordinators, string hostname, string? authKey, string? tailnet = null,
        IAgentStateStore? store = null, ImmutableArray<string> endpoints = default, bool forceReauth = false, bool tunnels = false,
        Func<ControlClientOptions, ControlClientOptions>? tune = null, Func<DataPlaneOptions, DataPlaneOptions>? tunePlane = null)
    {
        var agent = new TestAgent(hostname, store ?? new MemoryAgentStateStore());
        DataPlaneOptions? plane = null;
        if (tunnels)
        {
            agent.Tun = new VirtualTun(hostname);
            agent.Device = new WireGuardDevice(agent.Tun, UdpTransport.Bind(0));
            endpoints = [$"127.0.0.1:{agent.Device.ListenPort}"];
            agent.Link = new NoTunnelLink();
            plane = new DataPlaneOptions { Device = agent.Device, Link = agent.Link, DiscoverEndpoints = false, StaticEndpoints = endpoints };
            plane = tunePlane?.Invoke(plane) ?? plane;
        }
        var options = new ControlClientOptions
        {
            Coordinators = coordinators,
            StateStore = agent.Store,
            Hostname = hostname,
            AuthKey = authKey,
            Tailnet = tailnet,
            ForceReauth = forceReauth,
            Endpoints = endpoints.IsDefault ? [] : endpoints,
            MinBackoff = TimeSpan.FromMilliseconds(100),
            MaxBackoff = TimeSpan.FromSeconds(2),
            Observer = agent.OnReceived,
        };
        agent._root = system.ActorOf(AgentSupervisor.PropsFor(tune?.Invoke(options) ?? options, plane), $"agent-{hostname}-{Guid.NewGuid():N}");
        var actors = agent._root.Ask<AgentActors>(AgentSupervisor.GetActors.Instance, TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();
        agent.Client = actors.Control;
        agent.DataPlane = actors.DataPlane;
        agent.Device?.Start();
        agent.Client.Tell(new WatchControl(system.ActorOf(Props.Create(() => new Watcher(agent)))));
        return agent;
    }

    public static TestAgent Start(ActorSystem system, Uri coordinator, string hostname, string? authKey, string? tailnet = null,
        ImmutableArray<string> endpoints = default) =>
        Start(system, [coordinator], hostname, authKey, tailnet, endpoints: endpoints);

    /// <summary>Waits until the agent's netmap satisfies <paramref name="condition"/>.</summary>
    public async Task<NetMapView> WaitForNetMap(Func<NetMapView, bool> condition, string what)
    {
        await WaitFor(() => _view.Self is not null && condition(_view), what);
        return View;
    }

    public Task WaitForState(ControlState state, string? code = null) =>
        WaitFor(() => _state.State == state && (code is null || _state.Code == code), $"state {state} {code}");

    /// <summary>Waits until this agent sees exactly the given peers (by device id).</summary>
    public async Task<NetMapView> WaitForPeers(params TestAgent[] peers)
    {
        foreach (var peer in peers) await peer.WaitFor(() => peer.DeviceId is not null, "a device id");
        var expected = peers.Select(p => p.DeviceId!).Order().ToList();
        return await WaitForNetMap(view => view.Peers.Keys.Order().SequenceEqual(expected), $"peers [{string.Join(", ", peers.Select(p => p.Hostname))}]");
    }

    public Task<AgentStatus> Status() => Client.Ask<AgentStatus>(GetAgentStatus.Instance, TimeSpan.FromSeconds(10));

    /// <summary>Stops the whole agent (its supervisor and every actor under it).</summary>
    public async Task Stop()
    {
        await _root.GracefulStop(TimeSpan.FromSeconds(10));
    }

    public void Dispose() => Device?.Dispose();

    private async Task WaitFor(Func<bool> condition, string what)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            if (condition()) return;
            _waiters.Add((condition, done));
        }
        try
        {
            await done.Task.WaitAsync(Deadline);
        }
        catch (TimeoutException)
        {
            lock (_gate)
            {
                throw new TimeoutException(
                    $"agent {Hostname} never reached: {what}. It is {_state.State} ({_state.Code}: {_state.Detail}); netmap v{_view.Version} with peers [{string.Join(", ", _view.Peers.Values.Select(p => p.Name))}]; "
                    + $"it received: {string.Join("; ", _received.TakeLast(12).Select(Describe))}");
            }
        }
    }

    /// <summary>One received message in a line, for a failed wait's report.</summary>
    private static string Describe(ServerMessage message) => message.BodyCase switch
    {
        ServerMessage.BodyOneofCase.Netmap => $"map v{message.Netmap.Version} peers [{string.Join(", ", message.Netmap.Peers.Select(p => p.Name))}]",
        ServerMessage.BodyOneofCase.Delta => $"delta v{message.Delta.BaseVersion}→v{message.Delta.Version}"
            + $" +[{string.Join(", ", message.Delta.PeersAdded.Select(p => p.Name))}] -[{string.Join(", ", message.Delta.PeersRemoved)}]"
            + $" ~{message.Delta.PeersChanged.Count} patches {message.Delta.Patches.Count}{(message.Delta.Filter is null ? "" : " filter")}",
        var other => other.ToString(),
    };

    private void Update(Action change)
    {
        lock (_gate)
        {
            change();
            foreach (var waiter in _waiters.Where(w => w.Condition()).ToList())
            {
                _waiters.Remove(waiter);
                waiter.Done.TrySetResult();
            }
        }
    }

    private void OnReceived(ServerMessage message, NetMapApplied applied, NetMapStore store) => Update(() =>
    {
        _received.Add(message);
        if (applied is not (NetMapApplied.Replaced or NetMapApplied.Patched)) return;
        if (store.Version < _highestVersion) _versionsBackwards++;
        _highestVersion = Math.Max(_highestVersion, store.Version);
    });

    private sealed class Watcher : ReceiveActor
    {
        public Watcher(TestAgent agent)
        {
            Receive<NetMapChanged>(changed => agent.Update(() => agent._view = changed.View));
            Receive<NetMapForgotten>(_ => agent.Update(() => agent._view = NetMapView.Empty));
            Receive<RelayAccessChanged>(access => agent.Update(() => agent._relayAccess = access));
            Receive<NodeKeyChanged>(_ => { });
            Receive<DiscoKeyChanged>(_ => { });
            Receive<ControlStateChanged>(changed =>
            {
                agent.Update(() => agent._state = changed);
                agent.OnStateChanged?.Invoke(changed);
            });
        }
    }
}
