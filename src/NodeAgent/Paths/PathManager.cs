using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Net;
using Akka.Actor;
using Akka.Event;
using Weft.Contracts.Control;
using Weft.Contracts.Disco;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Paths;

/// <summary>
/// NAT traversal for the data plane (its child): it owns the tunnel socket's non-WireGuard traffic
/// (<see cref="MagicSocket"/>), the relay connections (a <see cref="RelayClient"/> per region, through
/// the <see cref="RelayHub"/> the engine sends with), netcheck (<see cref="EndpointDiscovery"/>) and a
/// <see cref="PathFinder"/> per peer. It reports this agent's endpoints and home region to the
/// ControlClient.
/// <para>
/// What it knows comes from others and is handed to it again after a restart: the keys and the relay
/// access from the ControlClient (through the DataPlane, which re-subscribes), the peers from the
/// next netmap, the endpoints from a fresh netcheck. Its children are recreated from that; the
/// engine's sessions are untouched.
/// </para>
/// </summary>
public sealed class PathManager : UntypedActor, IWithTimers
{
    private readonly WireGuardDevice _device;
    private readonly IActorRef _control;
    private readonly LocalAddressSource _local;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly ConcurrentDictionary<string, (IActorRef Finder, PathStatus Status)> _statuses = new();
    private readonly Dictionary<string, IActorRef> _finders = new();
    private readonly Dictionary<Curve25519PublicKey, IActorRef> _findersByDisco = new();
    private readonly Dictionary<string, PathPeer> _peers = new();
    private readonly Dictionary<int, IActorRef> _relays = new();
    private int _relayIncarnations;
    private int _finderIncarnations;
    private RelayHub _hub = null!;
    private Func<ReadOnlyMemory<byte>, Endpoint, bool>? _handler;
    private IActorRef _discovery = ActorRefs.Nobody;
    /// <summary>Who asked for a netcheck while endpoint discovery was stopped, to be asked again of the new one.</summary>
    private readonly List<IActorRef> _netcheckAskers = [];
    public ITimerScheduler Timers { get; set; } = null!;
    // Not at once: a discovery that fails as it starts would otherwise be started again in a tight loop.
    private static readonly TimeSpan DiscoveryRestartDelay = TimeSpan.FromSeconds(1);
    private PathContext? _context;
    private Curve25519PrivateKey? _disco;
    private string? _nodeKeyHex;
    private Curve25519PublicKey? _nodeKey;
    private RelayAccessChanged? _access;
    private int _home;
    private ImmutableArray<IPEndPoint> _ownEndpoints = [];
    private long _unknownDisco;
    private bool _down = true;
    private NetMapView? _view;
    // The view the finders were last brought up to date with: a change of a few peers after it touches only theirs.
    private NetMapView? _applied;

    public PathManager(WireGuardDevice device, IActorRef control, LocalAddressSource local)
    {
        _device = device;
        _control = control;
        _local = local;
    }

    public static Props PropsFor(WireGuardDevice device, IActorRef control, LocalAddressSource local) =>
        Props.Create(() => new PathManager(device, control, local));

    protected override void PreStart()
    {
        var self = Self;
        _hub = new RelayHub(region => self.Tell(new OpenRegion(region)));
        _device.Relays = _hub;
        _device.OtherPacketHandler = _handler = (datagram, source) =>
        {
            switch (MagicSocket.Classify(datagram.Span))
            {
                case DatagramKind.Disco:
                    self.Tell(new DiscoArrived(datagram.ToArray(), source));
                    return true;
                case DatagramKind.Stun:
                    self.Tell(new StunArrived(datagram.ToArray(), source, _device.Clock.NowMs));
                    return true;
                default:
                    return false;
            }
        };
        StartDiscovery();
        // Everything it needs comes from the ControlClient, now and after any restart of this actor.
        _control.Tell(new WatchControl(Self));
    }

    /// <summary>
    /// Endpoint discovery (netcheck) runs as long as this actor does. It is watched: if it stops (it
    /// failed as it started, or was killed) a new one starts a second later, and asks for the relay map
    /// and the home region as the first one did (<see cref="NetcheckStarted"/>). Without it the agent
    /// would stop learning its own endpoints, roams and home relay, and netcheck would not answer.
    /// </summary>
    private void StartDiscovery()
    {
        _discovery = Context.Watch(Context.ActorOf(EndpointDiscovery.PropsFor(_device, _local), "netcheck"));
        foreach (var asker in _netcheckAskers) _discovery.Tell(GetNetcheck.Instance, asker);
        _netcheckAskers.Clear();
    }

    protected override void PostStop()
    {
        _device.Uninstall(_handler, _hub);
        _device.SetMtu(_device.BaseMtu); // the next incarnation's finders prove their paths again
        _disco?.Dispose();
    }

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case DiscoKeyChanged disco:
                OnDiscoKey(disco);
                break;
            case NodeKeyChanged node:
                if (!Curve25519PrivateKey.TryParseHex(node.PrivateKeyHex, out var parsed)) break;
                using (parsed) _nodeKey = parsed.PublicKey;
                _nodeKeyHex = node.PrivateKeyHex;
                if (_context is not null) _context.NodeKey = _nodeKey.Value;
                PushCredentials();
                EnsureHomeRelay();
                break;
            case RelayAccessChanged access:
                OnRelayAccess(access);
                break;
            case PathFinderRestarted restarted:
                // It was made with the peer as it was then; hand it the peer as it is now.
                if (_peers.TryGetValue(restarted.PeerId, out var restartedPeer) && _finders.TryGetValue(restarted.PeerId, out var restartedFinder) && restartedFinder.Equals(Sender))
                    Sender.Tell(new PeerChanged(restartedPeer));
                break;
            case NetMapChanged changed:
                var previous = _view;
                _view = changed.View;
                if (_down) break;
                if (!(changed.Touch.PeersOnly && previous is not null && ReferenceEquals(previous, _applied) && OnPatched(changed.View, changed.Touch.PatchedPeers)))
                    OnView(changed.View);
                _applied = changed.View;
                break;
            case NetMapForgotten:
                // Void (the device is gone or another now): never applied again when the agent comes up.
                _view = null;
                _applied = null;
                if (!_down) OnPeers([]);
                break;
            case ControlStateChanged state:
                var down = state.State.IsIdle();
                if (down == _down) break;
                _down = down;
                if (down)
                {
                    // Down (or logged out): no paths and no relay connections until up again.
                    OnPeers([]);
                    _applied = null;
                    StopRelays();
                }
                else
                {
                    if (_home != 0) EnsureRelay(_home, home: true);
                    if (_view is { } view) OnView(view);
                    _applied = _view;
                }
                break;
            case NetcheckStarted:
                if (_home != 0) Sender.Tell(new HomeHint(_home));
                if (_access is not null) Sender.Tell(new RelayMapKnown(_access.Map, _access.ControlHost));
                break;
            case RelayClientStarted started:
                if (Credentials() is { } current) Sender.Tell(current);
                Sender.Tell(new SetHomeRegion(started.RegionId == _home));
                break;
            case DiscoArrived arrived:
                RouteDisco(arrived);
                break;
            case StunArrived stun:
                _discovery.Forward(stun);
                break;
            case OpenRegion open:
                if (!_relays.ContainsKey(open.RegionId)) EnsureRelay(open.RegionId, home: open.RegionId == _home);
                break;
            case NetcheckDone done:
                OnNetcheck(done);
                break;
            case OwnEndpointsChanged own:
                foreach (var finder in _finders.Values) finder.Tell(own);
                if (own.Roamed)
                {
                    // The machine moved: every TCP connection (relays, the coordinator's stream) may be dead
                    // without knowing it for a while. Make new ones now.
                    foreach (var relay in _relays.Values) relay.Tell(ReconnectRelay.Instance);
                    _control.Tell(new Reconnect(TimeSpan.Zero));
                }
                break;
            case GetNetcheck when _discovery.IsNobody():
                // Endpoint discovery is starting again (it stopped a moment ago): it answers once it is there.
                _netcheckAskers.Add(Sender);
                break;
            case GetNetcheck:
                _discovery.Forward(message);
                break;
            case Tunnels.MachineSlept slept:
                Context.Parent.Tell(slept); // the data plane's tunnels
                break;
            case PathMtuChanged:
                FollowPathMtus();
                break;
            case GetPathStatus:
                Sender.Tell(new PathStatusReply([.. _statuses.Values.Select(s => s.Status).OrderBy(s => s.NodeKeyHex, StringComparer.Ordinal)], _unknownDisco));
                break;
            case Terminated terminated when terminated.ActorRef.Equals(_discovery):
                _log.Warning("Endpoint discovery stopped; starting it again in {0}", DiscoveryRestartDelay);
                _discovery = ActorRefs.Nobody;
                Timers.StartSingleTimer(RestartDiscovery.Instance, RestartDiscovery.Instance, DiscoveryRestartDelay);
                break;
            case RestartDiscovery:
                if (_discovery.IsNobody()) StartDiscovery();
                break;
            case Terminated terminated:
                foreach (var (region, relay) in _relays.ToList())
                    if (relay.Equals(terminated.ActorRef)) _relays.Remove(region);
                OnFinderStopped(terminated.ActorRef);
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    private void OnDiscoKey(DiscoKeyChanged changed)
    {
        if (!Curve25519PrivateKey.TryParseHex(changed.PrivateKeyHex, out var key)) return;
        if (_disco is not null && _disco.PublicKey == key.PublicKey)
        {
            key.Dispose();
            return;
        }
        // A new disco key (the ControlClient restarted): every finder's box is stale, so they start over.
        foreach (var finder in _finders.Values) Context.Stop(finder);
        _finders.Clear();
        _findersByDisco.Clear();
        _disco?.Dispose();
        _disco = key;
        _context = new PathContext(_device, key, _statuses) { RelaysAvailable = _access is not null, OwnEndpoints = _ownEndpoints };
        if (_nodeKey is { } nodeKey) _context.NodeKey = nodeKey;
        if (!_down) OnPeers([.. _peers.Values]);
    }

    private void OnRelayAccess(RelayAccessChanged access)
    {
        // The coordinator's host matters only to relay nodes that name no host of their own (the embedded
        // relay): an agent that moved to another coordinator of the same cluster keeps relay connections
        // that name their hosts, instead of dropping them all at the moment of a failover.
        var mapChanged = _access is null || !_access.Map.Equals(access.Map)
            || (_access.ControlHost != access.ControlHost && access.Map.Regions.Any(r => r.Nodes.Any(n => n.Host.Length == 0)));
        _access = access;
        if (_context is not null) _context.RelaysAvailable = true;
        if (mapChanged)
        {
            _log.Info("Relay map: {0}", string.Join(", ", access.Map.Regions.Select(r => $"{r.Id} ({r.Code}, {r.Nodes.Count} node(s))")));
            StopRelays();
            _discovery.Tell(new RelayMapKnown(access.Map, access.ControlHost));
        }
        PushCredentials();
        EnsureHomeRelay();
    }

    /// <summary>
    /// Opens the home region's relay connection if there is none: going up opened none while the ticket named another
    /// node key than the agent's (logged out and in again: a new key, and the ticket for it comes later, with a map
    /// that did not change), and nothing else would until the next netcheck or a packet for that region.
    /// </summary>
    private void EnsureHomeRelay()
    {
        if (_home != 0 && !_relays.ContainsKey(_home)) EnsureRelay(_home, home: true);
    }

    /// <summary>
    /// The TUN's MTU follows the largest path MTU any peer proved (never below the configured one), so
    /// that the host sends packets that big at all; each peer's own limit is enforced in the engine,
    /// which answers a packet its path cannot carry with an ICMP "too big".
    /// </summary>
    private void FollowPathMtus()
    {
        var wanted = _statuses.Values.Select(s => s.Status.Mtu).Append(_device.BaseMtu).Max();
        if (wanted == _device.Mtu) return;
        if (_device.SetMtu(wanted)) _log.Info("TUN MTU is now {0} (configured {1})", wanted, _device.BaseMtu);
        else _log.Warning("Could not set the TUN's MTU to {0}; it stays {1}", wanted, _device.Mtu);
    }

    private void StopRelays()
    {
        foreach (var relay in _relays.Values) Context.Stop(relay);
        _relays.Clear();
    }

    /// <summary>The ticket names one node key: only a pair that matches is used (after a rotation the new ticket follows the new key).</summary>
    private RelayCredentials? Credentials()
    {
        if (_access is null || _nodeKeyHex is null || !RelayTicket.TryReadNodeKey(_access.Ticket, out var named) || named != _nodeKey) return null;
        return new RelayCredentials(_nodeKeyHex, _access.Ticket);
    }

    private void PushCredentials()
    {
        if (Credentials() is not { } credentials) return;
        foreach (var relay in _relays.Values) relay.Tell(credentials);
    }

    /// <summary>
    /// Opens (or re-marks) the relay connection of a region, but never while the agent is down or logged
    /// out: netchecks go on then (every 20-26 s, or when asked) and name a home region, and a relay client
    /// opened for it would hold a connection nobody uses, or retry a refused ticket for good. Going up
    /// opens the home region's again.
    /// </summary>
    private void EnsureRelay(int region, bool home)
    {
        if (_down) return;
        if (_relays.TryGetValue(region, out var existing))
        {
            existing.Tell(new SetHomeRegion(home));
            return;
        }
        if (_access?.Map.Regions.FirstOrDefault(r => r.Id == region) is not { } described || Credentials() is not { } credentials) return;
        // A new name each time: a client just stopped (down, a new map) may still hold its name while it terminates.
        var relay = Context.ActorOf(RelayClient.PropsFor(described, _access.ControlHost, _hub, _device, Self, credentials, home), $"relay-{region}.{++_relayIncarnations}");
        Context.Watch(relay);
        _relays[region] = relay;
    }

    private void OnNetcheck(NetcheckDone done)
    {
        var home = done.Report.HomeRegion != 0 ? done.Report.HomeRegion : _home;
        if (home != _home)
        {
            if (_home != 0 && _relays.TryGetValue(_home, out var old)) old.Tell(new SetHomeRegion(false));
            if (home != 0) _log.Info("Home relay region: {0}", home);
            _home = home;
        }
        if (home != 0) EnsureRelay(home, home: true);
        if (!done.Endpoints.SequenceEqual(_ownEndpoints))
        {
            _ownEndpoints = done.Endpoints;
            if (_context is not null) _context.OwnEndpoints = done.Endpoints;
            foreach (var finder in _finders.Values) finder.Tell(new OwnEndpointsChanged(done.Endpoints, Roamed: false));
        }
        _control.Tell(new SetEndpoints([.. done.Endpoints.Select(e => e.ToString())], _home));
    }

    /// <summary>The netmap's peers that carry traffic (as the data plane takes them), and this device's last home region.</summary>
    private void OnView(NetMapView view)
    {
        var selfHome = view.Self?.HomeRelay ?? 0;
        if (_home == 0 && selfHome > 0)
        {
            _home = selfHome;
            _discovery.Tell(new HomeHint(selfHome));
            EnsureRelay(selfHome, home: true);
        }
        var peers = new List<PathPeer>(view.Peers.Count);
        foreach (var node in view.Peers.Values)
            if (PathPeerOf(node) is { } peer) peers.Add(peer);
        OnPeers(peers);
    }

    private static PathPeer? PathPeerOf(Node node)
    {
        if (Tunnels.MeshPeer.FromNode(node) is not { } peer) return null;
        var disco = node.DiscoKey.Length == 32 ? new Curve25519PublicKey(node.DiscoKey.Span) : (Curve25519PublicKey?)null;
        return new PathPeer(node.Id, node.Name, peer.Key, disco, peer.Endpoints, node.HomeRelay);
    }

    /// <summary>
    /// A change of a few peers' endpoints, presence or keys: only their finders hear of it. False when
    /// one of them no longer carries traffic (the whole view must be reconciled then).
    /// </summary>
    private bool OnPatched(NetMapView view, ImmutableArray<string> patched)
    {
        var peers = new List<PathPeer>(patched.Length);
        foreach (var id in patched)
        {
            if (!view.Peers.TryGetValue(id, out var node) || PathPeerOf(node) is not { } peer) return false;
            peers.Add(peer);
        }
        foreach (var peer in peers) Upsert(peer);
        return true;
    }

    private void OnPeers(IReadOnlyList<PathPeer> peers)
    {
        var wanted = peers.ToDictionary(p => p.Id);
        foreach (var (id, finder) in _finders.ToList())
        {
            if (wanted.ContainsKey(id)) continue;
            Context.Stop(finder);
            _finders.Remove(id);
            _peers.Remove(id);
        }
        _findersByDisco.Clear();
        foreach (var peer in peers) Upsert(peer);
    }

    /// <summary>
    /// A finder stopped that was not stopped on purpose (those leave the table first): it failed as it
    /// started. The peer is still in the netmap, so it gets a new one, made from the peer as it is now.
    /// </summary>
    private void OnFinderStopped(IActorRef stopped)
    {
        var lost = _finders.FirstOrDefault(f => f.Value.Equals(stopped)).Key;
        if (lost is null) return;
        _finders.Remove(lost);
        foreach (var (disco, finder) in _findersByDisco.ToList())
            if (finder.Equals(stopped)) _findersByDisco.Remove(disco);
        _log.Warning("The path finder of {0} stopped; starting it again", lost);
        if (!_down && _peers.TryGetValue(lost, out var peer)) Upsert(peer);
    }

    /// <summary>A peer as the netmap now has it: its finder hears of it only if something it uses changed (a new peer gets one).</summary>
    private void Upsert(PathPeer peer)
    {
        var known = _peers.TryGetValue(peer.Id, out var before);
        _peers[peer.Id] = peer;
        if (_context is null) return;
        if (_finders.TryGetValue(peer.Id, out var finder))
        {
            if (!known || !PathPeers.Same(before!, peer)) finder.Tell(new PeerChanged(peer));
            if (known && before!.DiscoKey is { } old && old != peer.DiscoKey && _findersByDisco.TryGetValue(old, out var holder) && holder.Equals(finder))
                _findersByDisco.Remove(old);
        }
        else
        {
            // A new name each time: a finder just stopped (a new disco key, down and up) may still hold its name.
            finder = Context.ActorOf(PathFinder.PropsFor(_context, peer), $"path-{Uri.EscapeDataString(peer.Id)}.{++_finderIncarnations}");
            Context.Watch(finder);
            _finders[peer.Id] = finder;
        }
        if (peer.DiscoKey is { } disco) _findersByDisco[disco] = finder;
    }

    private void RouteDisco(DiscoArrived arrived)
    {
        if (!DiscoPacket.TryReadSender(arrived.Packet, out var sender) || !_findersByDisco.TryGetValue(sender, out var finder))
        {
            _unknownDisco++;
            if (_unknownDisco is 1 or 100 or 10_000) _log.Debug("Ignored {0} disco packet(s) from keys no peer has", _unknownDisco);
            return;
        }
        finder.Tell(arrived);
    }
}
