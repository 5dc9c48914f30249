using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Event;
using Weft.Contracts.Control;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Filter;
using Weft.NodeAgent.Paths;
using Weft.NodeAgent.Tunnels;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Agent;

/// <summary>How the data plane is put together: the engine, its OS interface, and what it advertises.</summary>
public sealed record DataPlaneOptions
{
    public required WireGuardDevice Device { get; init; }
    public required ITunnelLink Link { get; init; }
    /// <summary>The interface to leave out of the advertised endpoints (the TUN itself).</summary>
    public string? TunName { get; init; }
    /// <summary>Endpoints given on the command line, advertised before the discovered ones.</summary>
    public ImmutableArray<string> StaticEndpoints { get; init; } = [];
    /// <summary>Whether to advertise the machine's interface addresses (off for in-memory tests that give static ones).</summary>
    public bool DiscoverEndpoints { get; init; } = true;
    public TimeSpan EndpointRefreshInterval { get; init; } = TimeSpan.FromSeconds(5);
    public MagicDns? Dns { get; init; }
    /// <summary>How often the system's resolver is checked while MagicDNS is it: another program may have rewritten it (<see cref="MagicDns.Recheck"/>).</summary>
    public TimeSpan SystemDnsRecheckInterval { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>How often the routing rules and routes are checked against the kernel: another program may have removed them (<see cref="ITunnelLink.Reassert"/>).</summary>
    public TimeSpan RoutingRecheckInterval { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Route traffic for peers' approved subnets through them (<c>--accept-routes</c>; off by default on Linux, as in Tailscale).</summary>
    public bool AcceptRoutes { get; init; }
    /// <summary>The exit node to send internet traffic through (<c>--exit-node</c>: a peer's name, FQDN or tailnet address).</summary>
    public string? ExitNode { get; init; }
    /// <summary>Wall time, for peers' key expiry.</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;
    /// <summary>
    /// The longest the check for peers' key expiry waits at once: its timer runs on the monotonic clock, which
    /// stands still while the machine sleeps, so after a resume a key that lapsed meanwhile is seen within this.
    /// </summary>
    public TimeSpan KeyExpiryRecheck { get; init; } = TimeSpan.FromMinutes(1);
}

/// <summary>
/// Turns the netmap into a working data plane: the node key into the engine's identity, the peers
/// into tunnels (through its child, the <see cref="TunnelSupervisor"/>), the filter into the
/// engine's inbound filter, the device's addresses onto the TUN, and the names into MagicDNS. Its
/// other child, the <see cref="PathManager"/>, finds the paths to peers (relays, disco) and reports
/// this machine's endpoints and home relay to the ControlClient.
/// <para>
/// The data plane outlives the control plane: a lost stream changes nothing here, and the tunnels
/// stay up on the last netmap. Only <c>down</c>, a logout, or the coordinator refusing the device
/// (deleted, expired) takes them down. The engine and the TUN belong to the agent, not to this
/// actor, so a restart of this actor rebuilds its view from the ControlClient without dropping a
/// session.
/// </para>
/// </summary>
public sealed class DataPlane : ReceiveActor, IWithTimers
{
    private readonly DataPlaneOptions _options;
    private readonly IActorRef _control;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private IActorRef _tunnels = ActorRefs.Nobody;
    private IActorRef _paths = ActorRefs.Nobody;
    // Relays exist for this device: new peers start on their home relay until a direct path is proven.
    private bool _relays;
    // The next netmap applied greets every peer with a handshake (after a start, or down and up).
    private bool _greet = true;
    private NetMapView? _view;
    // The view the tunnels, filter, routes and DNS were last brought up to date with (null while down).
    private NetMapView? _applied;
    private bool _down = true;
    private bool _hasKey;
    private ImmutableArray<IpPrefix> _addresses = [];
    private RoutingStatus _routing = new(null, null, []);
    // From the options at start, then from each SetRoutingPrefs (up, set).
    private RoutingPrefs _prefs;
    // This incarnation was told prefs (up, set): the ones its predecessor hands over are older.
    private bool _prefsTold;
    // The earliest key expiry among the peers last applied that had not passed then: the view is applied again once it has.
    private DateTimeOffset? _nextKeyExpiry;
    // A coordinator serves this device now: it marks lapsed keys itself (within its sweep), by its own clock.
    private bool _coordinatorServes;
    // Peers left out because their key's time passed by this machine's clock (each logged once).
    private readonly HashSet<string> _lapsedHere = [];
    // The node key last told, to tell the tunnels again after they restart (TunnelsRestarted), and when that was last done.
    private NodeKeyChanged? _lastKeyChange;
    private long? _lastReapply;
    private static readonly TimeSpan ReapplyAtMostEvery = TimeSpan.FromSeconds(10);
    // Whether the control state was told yet (before that, _down means "not told", not "down").
    private bool _stateTold;

    public DataPlane(DataPlaneOptions options, IActorRef control)
    {
        _options = options;
        _control = control;
        _prefs = new RoutingPrefs(options.AcceptRoutes, options.ExitNode);

        Receive<NodeKeyChanged>(OnNodeKeyChanged);
        Receive<DiscoKeyChanged>(_ => { }); // the PathManager watches the ControlClient itself
        Receive<RelayAccessChanged>(_ =>
        {
            var first = !_relays;
            _relays = true;
            if (first && !_down && _view is { } current) Apply(current);
        });
        Receive<GetPathStatus>(get => _paths.Forward(get));
        Receive<GetNetcheck>(get => _paths.Forward(get));
        Receive<ControlStateChanged>(OnControlState);
        Receive<NetMapChanged>(changed =>
        {
            var previous = _view;
            _view = changed.View;
            if (_down) return;
            if (changed.Touch.PeersOnly && previous is not null && ReferenceEquals(previous, _applied) && TryApplyPatched(changed.View, changed.Touch.PatchedPeers)) return;
            Apply(changed.View);
        });
        Receive<KeyExpiryDue>(_ =>
        {
            if (_down || _view is not { } current || _nextKeyExpiry is not { } due || LapseClock is null) return;
            if (_options.Clock.GetUtcNow() >= due) Apply(current);
            else ArmKeyExpiry(due);
        });
        Receive<NetMapForgotten>(_ =>
        {
            _view = null;
            if (!_down) TearDown();
        });
        Receive<ResolvePeer>(resolve => Sender.Tell(Resolve(resolve)));
        Receive<GetTunnelStats>(get => _tunnels.Forward(get));
        Receive<MachineSlept>(slept => _tunnels.Tell(slept));
        Receive<GetRoutingStatus>(_ => Sender.Tell(_routing));
        Receive<ResumePrefs>(resume =>
        {
            if (!_prefsTold) UsePrefs(resume.Prefs);
        });
        Receive<RoutingPrefs>(prefs =>
        {
            _prefsTold = true;
            UsePrefs(prefs);
        });
        // The tunnels or the paths gave up (they failed more often than their restart limit allows)
        // and stopped. A data plane without them would keep the engine on its last peers and filter
        // while the netmap moves on: fail, so that the agent restarts this actor and it starts both again.
        Receive<Terminated>(terminated => throw new AgentServiceStoppedException(
            $"the data plane's {terminated.ActorRef.Path.Name} stopped after failing too often; the data plane restarts with new ones"));
        Receive<RecheckSystemDns>(_ =>
        {
            if (!_down) _options.Dns?.Recheck();
        });
        Receive<RecheckRouting>(_ =>
        {
            // Down too: a route the kernel would not take out as the agent went down (an exit node's default
            // route) would send the machine's traffic into a tunnel with no peers until the next up.
            try
            {
                if (_options.Link.Reassert() is { Count: > 0 } corrected)
                    _log.Warning("This agent's routing was not as it set it (another program changed it, or the kernel refused a change); corrected: {0}", string.Join("; ", corrected));
            }
            catch (IOException e)
            {
                _log.Warning("Cannot correct this agent's routing: {0}", e.Message);
            }
        });
        Receive<TunnelsRestarted>(restarted =>
        {
            // From the tunnels of a previous incarnation of this actor: those are gone, and so is what they failed on.
            if (!Sender.Equals(_tunnels)) return;
            // What the tunnels failed on is lost, and nothing else would send it again before the next netmap
            // change (hours, in a quiet tailnet): new peers without a tunnel, a rotation never taken. Told again,
            // but not over and over: a message that fails every time (a bug, a netmap past the engine's limits)
            // would otherwise use up the tunnels' restarts in a moment, then this actor's, then the agent's.
            var now = _options.Clock.GetTimestamp();
            if (_lastReapply is { } last && _options.Clock.GetElapsedTime(last, now) < ReapplyAtMostEvery)
            {
                _log.Warning("The tunnels restarted again soon after being told everything again ({0}): left as they are until the next change", restarted.Reason);
                return;
            }
            _lastReapply = now;
            if (_lastKeyChange is { } key) OnNodeKeyChanged(key);
            // Down is only known once the control state was told: before that, this incarnation knows nothing to undo.
            if (_down && _stateTold) _tunnels.Tell(new ApplyMesh([]));
            else if (!_down && _view is { } current) Apply(current);
        });
        Receive<MeshApplied>(_ => { });
        Receive<PrivateKeySet>(_ => { });
    }

    public static Props PropsFor(DataPlaneOptions options, IActorRef control) => Props.Create(() => new DataPlane(options, control));

    public ITimerScheduler Timers { get; set; } = null!;

    private WireGuardDevice Device => _options.Device;

    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(maxNrOfRetries: 10, withinTimeRange: TimeSpan.FromMinutes(1), localOnlyDecider: e =>
        {
            _log.Error(e, "The tunnels or the path manager failed and restart; the tunnels' sessions live in the engine and stay up");
            return Directive.Restart;
        });

    /// <summary>
    /// The new incarnation starts from the options: it is told the routing prefs chosen since. They go
    /// behind whatever was already in the mailbox, so prefs sent while this one failed (a <c>set</c>) are
    /// newer and stand.
    /// </summary>
    protected override void PreRestart(Exception reason, object message)
    {
        Self.Tell(new ResumePrefs(_prefs));
        base.PreRestart(reason, message);
    }

    private void UsePrefs(RoutingPrefs prefs)
    {
        if (prefs == _prefs) return;
        _log.Info("Routing prefs: accept routes {0}, exit node {1}", prefs.AcceptRoutes, prefs.ExitNode ?? "none");
        _prefs = prefs;
        if (!_down && _view is { } current) Apply(current);
    }

    private sealed record ResumePrefs(RoutingPrefs Prefs);

    protected override void PreStart()
    {
        // Derived from the engine, not remembered: after a restart of this actor the engine still has its key.
        _hasKey = Device.PrivateKey is not null;
        _tunnels = Context.Watch(Context.ActorOf(TunnelSupervisor.PropsFor(Device), "tunnels"));
        var local = new LocalAddressSource(_options.TunName, _options.StaticEndpoints, _options.DiscoverEndpoints, _options.EndpointRefreshInterval);
        _paths = Context.Watch(Context.ActorOf(PathManager.PropsFor(Device, _control, local), "paths"));
        // Until the first netmap says otherwise, nothing may come in.
        Device.Filter ??= TrafficFilter.Compile(new PacketFilter(), []);
        _control.Tell(new WatchControl(Self));
        if (_options.Dns is not null) Timers.StartPeriodicTimer("system-dns", RecheckSystemDns.Instance, _options.SystemDnsRecheckInterval);
        Timers.StartPeriodicTimer("routing", RecheckRouting.Instance, _options.RoutingRecheckInterval);
    }

    private void OnNodeKeyChanged(NodeKeyChanged changed)
    {
        _lastKeyChange = changed;
        var key = AgentStateFile.Key(changed.PrivateKeyHex);
        if (Device.PrivateKey is { } current && current.PublicKey == key.PublicKey)
        {
            key.Dispose();
            return;
        }
        // A rotation keeps the sessions so that no packet is lost while peers learn the new key.
        _tunnels.Tell(new SetPrivateKey(key, Rotation: changed.Rotated && _hasKey));
        if (changed.Rotated) _log.Info("Node key rotated: handshaking with every peer under the new key");
        _hasKey = true;
    }

    private void OnControlState(ControlStateChanged changed)
    {
        _stateTold = true;
        var serves = changed.State == ControlState.Running;
        if (serves != _coordinatorServes)
        {
            // Whose clock says when a peer's key lapses changes with it (see LapseClock).
            _coordinatorServes = serves;
            if (!_down && changed.State.IsIdle() == _down && _view is { } current) Apply(current);
        }
        var down = changed.State.IsIdle();
        if (down == _down) return;
        _down = down;
        if (down)
        {
            _log.Info("Tunnels down: {0}", changed.Detail);
            TearDown();
        }
        else if (_view is { } view)
        {
            Apply(view);
        }
    }

    /// <summary>No peers, no filter grants, no routes and no names: down, or a netmap that is void.</summary>
    private void TearDown()
    {
        _tunnels.Tell(new ApplyMesh([]));
        _applied = null;
        _greet = true;
        Device.Filter = TrafficFilter.Compile(new PacketFilter(), []);
        SetRoutes([], null, null);
        _options.Dns?.Update(null, []);
    }

    /// <summary>
    /// The time by which peers' keys lapse here, or null while a coordinator serves this device: it marks
    /// lapsed keys itself, by its own clock, and this machine's may be wrong (a hardware clock holding local
    /// time, read as UTC). Without a coordinator (a cached netmap, an outage), this machine's clock is all
    /// there is, and a key must not be accepted past its end for good.
    /// </summary>
    private DateTimeOffset? LapseClock => _coordinatorServes ? null : _options.Clock.GetUtcNow();

    /// <summary>Applies the view again when the next peer key lapses (at most <see cref="DataPlaneOptions.KeyExpiryRecheck"/> from now, to look again).</summary>
    private void ArmKeyExpiry(DateTimeOffset due)
    {
        var wait = due - _options.Clock.GetUtcNow();
        Timers.StartSingleTimer("key-expiry", KeyExpiryDue.Instance, wait <= TimeSpan.Zero ? TimeSpan.Zero : wait < _options.KeyExpiryRecheck ? wait : _options.KeyExpiryRecheck);
    }

    private MeshPeer? MeshPeerOf(Node node, RouteCarriers? carriers, bool asExitNode, DateTimeOffset? now)
    {
        if (MeshPeer.FromNode(node, carriers, asExitNode, now) is not { } peer) return null;
        return _relays && node.HomeRelay > 0 ? peer with { Relay = Endpoint.ForRelay(node.HomeRelay, peer.Key) } : peer;
    }

    /// <summary>
    /// A delta that only patched a few peers' endpoints, presence or keys (as Tailscale's
    /// <c>tryHandleIncrementally</c>): only those peers' tunnels are updated. The filter, the DNS
    /// names and the routes do not depend on those fields, so they stay. False when a patched peer
    /// carries routes or could be the exit node (its presence elects carriers), when this is the first
    /// netmap after <c>up</c> (every peer is greeted then), or when a peer no longer carries traffic:
    /// the whole view is applied then.
    /// </summary>
    private bool TryApplyPatched(NetMapView view, ImmutableArray<string> patched)
    {
        if (_greet || _prefs.ExitNode is not null) return false;
        var peers = new List<MeshPeer>(patched.Length);
        foreach (var id in patched)
        {
            if (!view.Peers.TryGetValue(id, out var node) || node.Routes.Count > 0 || MeshPeerOf(node, null, asExitNode: false, LapseClock) is not { } peer) return false;
            peers.Add(peer);
        }
        if (peers.Count > 0) _tunnels.Tell(new ApplyMesh(peers) { PathManaged = true, PeersOnly = true });
        _applied = view;
        return true;
    }

    private void Apply(NetMapView view)
    {
        _applied = view;
        if (view.Self is { } self) SetAddresses(self);
        var now = LapseClock;
        var (exitNode, exitProblem) = ChooseExitNode(view, now);
        var carriers = _prefs.AcceptRoutes ? RouteCarriers.Elect(view.Peers.Values, now) : RouteCarriers.None;
        var peers = new List<MeshPeer>(view.Peers.Count);
        DateTimeOffset? nextExpiry = null;
        var lapsed = new HashSet<string>();
        foreach (var node in view.Peers.Values)
        {
            if (MeshPeerOf(node, carriers, asExitNode: node == exitNode, now) is not { } peer)
            {
                if (!node.Expired && MeshPeer.HasLapsed(node, now)) lapsed.Add(node.Id);
                continue;
            }
            peers.Add(peer);
            if (node.KeyExpiry?.ToDateTimeOffset() is { } expiry && (nextExpiry is null || expiry < nextExpiry)) nextExpiry = expiry;
        }
        foreach (var id in lapsed.Except(_lapsedHere))
            _log.Warning("Peer {0}'s key expired at {1:u} by this machine's clock, and no coordinator says otherwise: it has no tunnel until one does", view.Peers[id].Name, view.Peers[id].KeyExpiry.ToDateTimeOffset());
        _lapsedHere.Clear();
        _lapsedHere.UnionWith(lapsed);
        _nextKeyExpiry = now is null ? null : nextExpiry;
        if (_nextKeyExpiry is { } due) ArmKeyExpiry(due);
        else Timers.Cancel("key-expiry");
        var routes = new HashSet<IpPrefix>();
        foreach (var text in carriers.Routes)
            if (IpPrefix.TryParse(text, out var route)) routes.Add(route);
        // With an exit node chosen, the default route goes into the tunnel even when that node is gone:
        // internet traffic stops rather than leaking past it (Tailscale fails closed the same way).
        if (_prefs.ExitNode is not null) routes.UnionWith(MeshPeer.ExitRoutes);
        // The filter first: a peer must never be reachable under a filter older than its netmap.
        Device.Filter = TrafficFilter.Compile(view.Filter, view.Peers.Values);
        _tunnels.Tell(new ApplyMesh(peers) { PathManaged = true, Greet = _greet });
        _greet = false;
        SetRoutes(routes, exitNode?.Name, exitProblem);
        _options.Dns?.Update(view, _addresses);
    }

    private (Node? Node, string? Problem) ChooseExitNode(NetMapView view, DateTimeOffset? now)
    {
        if (_prefs.ExitNode is not { } wanted) return (null, null);
        var target = wanted.Trim().TrimEnd('.');
        var node = view.Peers.Values.FirstOrDefault(n => string.Equals(n.Name, target, StringComparison.OrdinalIgnoreCase)
            || string.Equals(n.Fqdn.TrimEnd('.'), target, StringComparison.OrdinalIgnoreCase) || n.Addresses.Contains(target));
        if (node is null) return (null, $"no peer called '{target}' is in the netmap (the policy must let this device reach it)");
        if (!node.ExitNode) return (null, $"'{node.Name}' is not an exit node this device may use (it must advertise one and be approved, and no grant's via may name other exit nodes for this device)");
        if (MeshPeer.HasLapsed(node, now)) return (null, $"'{node.Name}''s key expired: it must sign in again, or an admin must renew it");
        return (node, null);
    }

    private void SetRoutes(IReadOnlyCollection<IpPrefix> routes, string? exitNode, string? problem)
    {
        if (problem is not null && problem != _routing.ExitNodeProblem) _log.Warning("Exit node {0}: {1}; internet traffic is dropped until it is", _prefs.ExitNode, problem);
        if (exitNode is not null && exitNode != _routing.ExitNode) _log.Info("Internet traffic goes through the exit node {0}", exitNode);
        try
        {
            _options.Link.SetRoutes(routes);
            _routing = new RoutingStatus(_prefs.ExitNode is null ? null : exitNode ?? _prefs.ExitNode, problem,
                [.. routes.Select(r => r.ToString()).Order(StringComparer.Ordinal)]);
        }
        catch (IOException e)
        {
            _log.Error("Cannot install the tunnel's routes: {0}", e.Message);
        }
    }

    private void SetAddresses(Node self)
    {
        ImmutableArray<IpPrefix> wanted =
            [.. NodeAddresses.Of(self).Select(a => new IpPrefix(a, a.AddressFamily == AddressFamily.InterNetwork ? 32 : 128))];
        if (wanted.SequenceEqual(_addresses)) return;
        try
        {
            _options.Link.SetAddresses(wanted);
            _addresses = wanted;
            _log.Info("Tailnet addresses: {0}", string.Join(", ", wanted));
        }
        catch (IOException e)
        {
            _log.Error("Cannot give the tunnel interface its addresses: {0}", e.Message);
        }
    }

    private object Resolve(ResolvePeer resolve)
    {
        if (_view is not { Self: { } self } view) return new PeerNotFound("no netmap yet");
        var target = resolve.Target.Trim().TrimEnd('.');
        Node? found = null;
        IPAddress? address = null;
        if (IPAddress.TryParse(target, out var literal))
        {
            address = literal;
            found = view.Peers.Values.FirstOrDefault(n => NodeAddresses.Of(n).Contains(literal));
            if (found is null) return new PeerNotFound($"no peer has the address {literal}");
        }
        else
        {
            found = view.Peers.Values.FirstOrDefault(n => string.Equals(n.Name, target, StringComparison.OrdinalIgnoreCase))
                    ?? view.Peers.Values.FirstOrDefault(n => string.Equals(n.Fqdn.TrimEnd('.'), target, StringComparison.OrdinalIgnoreCase));
            if (found is null) return new PeerNotFound($"no peer is called '{target}'");
            var family = resolve.PreferIPv6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;
            address = NodeAddresses.Of(found).FirstOrDefault(a => a.AddressFamily == family) ?? NodeAddresses.Of(found).FirstOrDefault();
            if (address is null) return new PeerNotFound($"'{target}' has no address");
        }
        var source = NodeAddresses.Of(self).FirstOrDefault(a => a.AddressFamily == address.AddressFamily);
        if (source is null) return new PeerNotFound($"this device has no {address.AddressFamily} tailnet address");
        return new PeerResolved(found.Name, address, source);
    }

    private sealed class RecheckRouting
    {
        public static readonly RecheckRouting Instance = new();
    }

    private sealed class RecheckSystemDns
    {
        public static readonly RecheckSystemDns Instance = new();
    }

    /// <summary>The earliest peer key expiry may have passed (<see cref="ArmKeyExpiry"/>).</summary>
    private sealed class KeyExpiryDue
    {
        public static readonly KeyExpiryDue Instance = new();
    }
}
