using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Net;
using System.Security.Cryptography;
using Akka.Actor;
using Akka.Event;
using Weft.Contracts.Crypto;
using Weft.Contracts.Disco;
using Weft.Contracts.Keys;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Paths;

/// <summary>What every PathFinder shares: this agent's keys, whether relays exist, and where statuses are published.</summary>
public sealed class PathContext(WireGuardDevice device, Curve25519PrivateKey disco, ConcurrentDictionary<string, (IActorRef Finder, PathStatus Status)> statuses)
{
    public WireGuardDevice Device { get; } = device;
    public Curve25519PrivateKey Disco { get; } = disco;
    /// <summary>Each peer's path by node key (hex), with the finder that published it: a finder removes only its own entry.</summary>
    public ConcurrentDictionary<string, (IActorRef Finder, PathStatus Status)> Statuses { get; } = statuses;
    /// <summary>This agent's node key (it changes on rotation; disco pings carry it).</summary>
    public Curve25519PublicKey NodeKey { get; set; }
    public bool RelaysAvailable { get; set; }
    public ImmutableArray<IPEndPoint> OwnEndpoints { get; set; } = [];
}

/// <summary>The peer's netmap entry changed.</summary>
public sealed record PeerChanged(PathPeer Peer);

/// <summary>
/// One peer's path finding (Tailscale's magicsock endpoint): it probes every candidate address of
/// the peer with disco pings from the tunnel's own socket, asks the peer (through the relay) to
/// ping back with call-me-maybe, and moves the peer's WireGuard endpoint to the best direct address
/// once a pong proves it, for 6.5 s at a time. Until then, and whenever the proof runs out, packets
/// go through the peer's home relay. A heartbeat every 3 s, armed only while the peer is in use,
/// renews the proof and re-probes everything every minute in search of a better path.
/// <para>
/// Created by the PathManager for each netmap peer; a restart (or a new disco key) starts from the
/// relay again and re-learns the direct path with the next probes, which costs one round trip.
/// </para>
/// </summary>
public sealed class PathFinder : UntypedActor, IWithTimers
{
    public static readonly TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(3);
    private const long TrustMs = 6500;
    private const long SessionActiveMs = 45_000;
    private const long PingThrottleMs = 5000;
    private const long PingTimeoutMs = 5000;
    private const long UpgradeIntervalMs = 60_000;
    private const double GoodEnoughLatencyMs = 5;
    private const long LearnedEndpointLifetimeMs = 45_000;

    private readonly PathContext _context;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private PathPeer _peer;
    private SealedBox? _box;
    // Candidate addresses: from the netmap, from call-me-maybe, and learned from pings.
    private readonly Dictionary<IPEndPoint, Candidate> _candidates = new();
    private readonly Dictionary<string, (IPEndPoint To, long SentAt)> _outstanding = new();
    private IPEndPoint? _best;
    private double _bestLatency;
    private long _trustUntil;
    private long _lastFullPing;
    private bool _heartbeat;
    private DateTimeOffset? _pathSince;
    private string _pathKind = "none";

    private sealed class Candidate
    {
        public bool FromNetmap;
        public bool FromCallMeMaybe;
        public long LearnedAt;
        public long LastPing;
        public double? Latency;
    }

    private sealed class Heartbeat
    {
        public static readonly Heartbeat Instance = new();
    }

    private sealed class PathWanted
    {
        public static readonly PathWanted Instance = new();
    }

    public PathFinder(PathContext context, PathPeer peer)
    {
        _context = context;
        _peer = peer;
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props PropsFor(PathContext context, PathPeer peer) => Props.Create(() => new PathFinder(context, peer));

    private long Now => _context.Device.Clock.NowMs;

    protected override void PreStart()
    {
        Learn(_peer);
        ArmHeartbeat();
        Self.Tell(Heartbeat.Instance);
    }

    protected override void PostStop()
    {
        _box?.Dispose();
        RemoveStatus();
        _bound?.ReleasePathSignals(_signals);
    }

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case PeerChanged changed:
                var discoChanged = changed.Peer.DiscoKey != _peer.DiscoKey;
                var keyChanged = changed.Peer.NodeKey != _peer.NodeKey;
                if (keyChanged) RemoveStatus();
                Learn(changed.Peer);
                if (discoChanged)
                {
                    // A restarted peer: its old proofs mean nothing now.
                    _best = null;
                    _trustUntil = 0;
                    _outstanding.Clear();
                    FullPing(force: true);
                }
                SetPath();
                break;
            case DiscoArrived arrived:
                OnDisco(arrived);
                break;
            case Heartbeat:
                OnHeartbeat();
                break;
            case PathWanted:
                ArmHeartbeat();
                OnHeartbeat();
                break;
            case OwnEndpointsChanged own:
                if (own.Roamed)
                {
                    // We moved: the direct path must be proven again from here, and the peer told where we are.
                    _trustUntil = 0;
                    foreach (var candidate in _candidates.Values) candidate.LastPing = 0;
                    SetPath();
                    FullPing(force: true);
                }
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    /// <summary>Takes in the netmap's view of the peer: its disco key, its advertised endpoints, its home region.</summary>
    private void Learn(PathPeer peer)
    {
        if (peer.DiscoKey != _peer.DiscoKey || _box is null)
        {
            _box?.Dispose();
            _box = peer.DiscoKey is { } disco ? SealedBox.Between(_context.Disco, disco) : null;
        }
        _peer = peer;
        foreach (var candidate in _candidates.Values) candidate.FromNetmap = false;
        foreach (var endpoint in peer.Endpoints)
        {
            if (endpoint.IsRelay) continue;
            CandidateFor(endpoint.Address).FromNetmap = true;
        }
        Prune();
    }

    private Peer? _bound;
    private IPathSignals _signals = null!;

    /// <summary>
    /// The engine's peer for this node key, bound to this finder (its path is ours to choose, and its
    /// packet path wakes our heartbeat). The engine may create it after we start, or replace it on a
    /// key rotation, so this is looked up each time.
    /// </summary>
    private Peer? EnginePeer()
    {
        if (!_context.Device.Peers.TryGetValue(_peer.NodeKey, out var peer)) return null;
        if (!ReferenceEquals(peer, _bound))
        {
            _bound = peer;
            peer.PathManaged = true;
            peer.PathSignals = _signals ??= new Signals(Self);
        }
        return peer;
    }

    private Candidate CandidateFor(IPEndPoint address)
    {
        if (!_candidates.TryGetValue(address, out var candidate)) _candidates[address] = candidate = new Candidate();
        return candidate;
    }

    private void Prune()
    {
        var now = Now;
        foreach (var (address, candidate) in _candidates.ToList())
        {
            var learnedAlive = candidate.LearnedAt != 0 && now - candidate.LearnedAt < LearnedEndpointLifetimeMs;
            if (!candidate.FromNetmap && !candidate.FromCallMeMaybe && !learnedAlive && !address.Equals(_best)) _candidates.Remove(address);
        }
        foreach (var (tx, sent) in _outstanding.ToList())
            if (now - sent.SentAt > PingTimeoutMs) _outstanding.Remove(tx);
    }

    private void ArmHeartbeat()
    {
        if (_heartbeat) return;
        _heartbeat = true;
        Timers.StartPeriodicTimer("heartbeat", Heartbeat.Instance, HeartbeatInterval);
    }

    private void OnHeartbeat()
    {
        var now = Now;
        var peer = EnginePeer();
        var lastUse = peer is null ? 0 : Math.Max(peer.LastAuthenticatedSent, peer.LastAuthenticatedReceived);
        var starting = _lastFullPing == 0;
        if (!starting && (peer is null || now - lastUse > SessionActiveMs))
        {
            // Idle: stop the heartbeat; the first packet sent re-arms it (Peer.OnPathUse).
            _heartbeat = false;
            Timers.Cancel("heartbeat");
            peer?.MarkPathIdle();
            SetPath();
            return;
        }
        Prune();
        if (_best is { } best) SendPing(best);
        var trusted = _best is not null && now < _trustUntil;
        if (!trusted || _lastFullPing == 0 || (_bestLatency > GoodEnoughLatencyMs && now - _lastFullPing >= UpgradeIntervalMs)) FullPing(force: false);
        SetPath();
    }

    /// <summary>Pings every candidate not pinged in the last 5 s, and asks the peer through the relay to ping us back.</summary>
    private void FullPing(bool force)
    {
        var now = Now;
        var sent = 0;
        foreach (var (address, candidate) in _candidates)
        {
            if (!force && now - candidate.LastPing < PingThrottleMs) continue;
            if (SendPing(address)) sent++;
        }
        _lastFullPing = now;
        if ((sent > 0 || force) && RelayEndpoint() is { } relay && _box is not null && !_context.OwnEndpoints.IsDefaultOrEmpty)
            _context.Device.SendDatagram(relay, DiscoPacket.Seal(new DiscoCallMeMaybe(_context.OwnEndpoints), _context.Disco.PublicKey, _box));
    }

    private bool SendPing(IPEndPoint address)
    {
        if (_box is null) return false;
        var tx = RandomNumberGenerator.GetBytes(DiscoPacket.TxIdSize);
        var packet = DiscoPacket.Seal(new DiscoPing(tx, _context.NodeKey), _context.Disco.PublicKey, _box);
        var candidate = CandidateFor(address);
        candidate.LastPing = Now;
        _outstanding[Convert.ToHexString(tx)] = (address, Now);
        return _context.Device.SendDatagram(new Endpoint(address), packet);
    }

    private void OnDisco(DiscoArrived arrived)
    {
        if (_box is null) return;
        var message = DiscoPacket.Open(arrived.Packet, _box);
        var viaRelay = arrived.Source.IsRelay;
        switch (message)
        {
            case DiscoPing ping:
                // Answer where it came from: the pong tells the peer what address we saw.
                // (Through a relay the address is the relay placeholder, 127.3.3.40:<region>.)
                var seen = arrived.Source.Address;
                var answer = DiscoPacket.Seal(new DiscoPong(ping.TxId, seen), _context.Disco.PublicKey, _box);
                _context.Device.SendDatagram(arrived.Source, answer);
                if (!viaRelay)
                {
                    var candidate = CandidateFor(seen);
                    candidate.LearnedAt = Now;
                    // The peer can reach us from there; prove our way back to it too.
                    if (Now - candidate.LastPing >= PingThrottleMs || _best is null) SendPing(seen);
                }
                break;
            case DiscoPong pong when !viaRelay:
                OnPong(pong, arrived.Source.Address);
                break;
            case DiscoCallMeMaybe call when viaRelay:
                foreach (var candidate in _candidates.Values) candidate.FromCallMeMaybe = false;
                foreach (var endpoint in call.Endpoints)
                {
                    if (endpoint.Address.IsIPv6LinkLocal) continue;
                    var candidate = CandidateFor(endpoint);
                    candidate.FromCallMeMaybe = true;
                    candidate.LastPing = 0;
                }
                FullPing(force: false);
                ArmHeartbeat();
                break;
        }
    }

    private void OnPong(DiscoPong pong, IPEndPoint from)
    {
        var now = Now;
        if (!_outstanding.Remove(Convert.ToHexString(pong.TxId), out var sent) || !sent.To.Equals(from)) return;
        var latency = now - sent.SentAt;
        var candidate = CandidateFor(from);
        candidate.Latency = latency;
        var trusted = _best is not null && now < _trustUntil;
        if (_best is null || !trusted || Better(latency, _bestLatency)) _best = from;
        if (from.Equals(_best))
        {
            _bestLatency = latency;
            _trustUntil = now + TrustMs;
        }
        SetPath();
    }

    /// <summary>A clearly faster path wins (10% hysteresis, so two similar paths do not flap).</summary>
    private static bool Better(double latency, double current) => latency < current * 0.9;

    private Endpoint? RelayEndpoint() =>
        _context.RelaysAvailable && _peer.HomeRegion > 0 ? Endpoint.ForRelay(_peer.HomeRegion, _peer.NodeKey) : null;

    /// <summary>Direct while a pong vouches for it; otherwise the relay; without relays, the best guess.</summary>
    private void SetPath()
    {
        var now = Now;
        Endpoint? wanted;
        string kind;
        if (_best is { } best && now < _trustUntil) (wanted, kind) = (new Endpoint(best), "direct");
        else if (RelayEndpoint() is { } relay) (wanted, kind) = (relay, "relay");
        else if (_best is { } untrusted) (wanted, kind) = (new Endpoint(untrusted), "direct");
        else
        {
            var first = _peer.Endpoints.FirstOrDefault(e => !e.IsRelay && e.IsIPv4) ?? _peer.Endpoints.FirstOrDefault(e => !e.IsRelay);
            (wanted, kind) = (first, first is null ? "none" : "direct");
        }
        if (EnginePeer() is { } peer && wanted is not null && !Equals(peer.Endpoint, wanted))
        {
            var was = peer.Endpoint;
            peer.Endpoint = wanted;
            peer.Signals.EndpointMoved(peer);
            if (kind != _pathKind || was?.IsRelay != wanted.IsRelay)
            {
                _log.Info("Path to {0} is now {1} {2}{3}", _peer.Name, kind, wanted, kind == "direct" && now < _trustUntil ? $" ({_bestLatency:0} ms)" : "");
                _pathSince = DateTimeOffset.UtcNow;
            }
        }
        _pathKind = kind;
        _context.Statuses[_peer.NodeKey.ToHex()] = (Self, new PathStatus(_peer.NodeKey.ToHex(), kind, wanted?.ToString(), wanted?.RelayRegion ?? 0,
            kind == "direct" && now < _trustUntil ? _bestLatency : null, _pathSince));
    }

    /// <summary>Removes this peer's status if this finder published it (a successor's stays).</summary>
    private void RemoveStatus()
    {
        var key = _peer.NodeKey.ToHex();
        if (_context.Statuses.TryGetValue(key, out var entry) && entry.Finder.Equals(Self)) _context.Statuses.TryRemove(new KeyValuePair<string, (IActorRef, PathStatus)>(key, entry));
    }

    private sealed class Signals(IActorRef finder) : IPathSignals
    {
        public void PathWanted(Peer peer) => finder.Tell(PathFinder.PathWanted.Instance);
    }
}
