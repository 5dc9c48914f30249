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
/// Path MTU: once a direct path is trusted, and every minute while it is in use, pings padded to
/// each of <see cref="ProbeWireSizes"/> go out with Don't Fragment set; the largest size answered
/// becomes the peer's path MTU in the engine (less the IP, UDP and WireGuard headers). Until then
/// the peer gets the configured MTU. The proof outlives pauses in the trust (an idle peer, a spell
/// on the relay, which carries packets that big too): the hosts' stacks would otherwise learn the
/// smaller MTU and keep it for ten minutes. A later round answered less, a roam, or a restarted
/// peer replaces it.
/// </para>
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
    /// <summary>Outer packet sizes (IP header included) that MTU probes try; the engine's buffers stop at 1500.</summary>
    public static readonly int[] ProbeWireSizes = [1400, 1420, 1450, 1480, 1500];
    private const long MtuProbeIntervalMs = 60_000;
    private const int WireGuardOverhead = Messages.TransportHeaderSize + Messages.TagSize;
    /// <summary>
    /// How long, at most, a peer that rotated its node key is still addressed on the relay under its old
    /// key: half of the time its agent keeps the old key's relay connection open after the new one is up.
    /// </summary>
    public static readonly TimeSpan RotatedRelayKeyGrace = RelayClient.OldConnectionGrace / 2;

    private readonly PathContext _context;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private PathPeer _peer;
    private SealedBox? _box;
    // Candidate addresses: from the netmap, from call-me-maybe, and learned from pings.
    private readonly Dictionary<IPEndPoint, Candidate> _candidates = new();
    // Pings awaiting their pong, by TxID; WireSize is the probed size of an MTU probe, 0 for a plain ping.
    private readonly Dictionary<string, (IPEndPoint To, long SentAt, int WireSize)> _outstanding = new();
    private IPEndPoint? _best;
    private double _bestLatency;
    private long _trustUntil;
    private long _lastFullPing;
    private bool _heartbeat;
    private DateTimeOffset? _pathSince;
    private string _pathKind = "none";
    private int _pathMtu;
    /// <summary>
    /// The node key the peer is addressed under on its relay. After a rotation the netmap may name the
    /// new key before the peer's relay connection under it is up (the peer dials it once its coordinator
    /// hands it a ticket for the new key), and the relay drops what is sent to a key with no connection.
    /// So the old key is kept, while the peer's old connection still takes packets, until something
    /// arrives through the relay from the new key, or <see cref="RotatedRelayKeyGrace"/> passes.
    /// </summary>
    private Curve25519PublicKey _relayKey;
    /// <summary>Restarted: the peer it was made with may be long out of date, so the next one it is handed is taken as it is.</summary>
    private bool _restarted;

    private sealed class Candidate
    {
        public bool FromNetmap;
        public bool FromCallMeMaybe;
        public long LearnedAt;
        public long LastPing;
        public double? Latency;
        /// <summary>The largest outer packet the last probe round proved (0: none beyond the configured MTU).</summary>
        public int ProvenWireMtu;
        public long LastProbe;
        /// <summary>The probe round in flight: when it was sent (0: none), the largest size answered so far, and how many probes are unanswered.</summary>
        public long RoundAt;
        public int RoundBest;
        public int RoundPending;
        /// <summary>What the previous round proved: a round that proves something else is logged.</summary>
        public int LastRoundResult;
    }

    private sealed class Heartbeat
    {
        public static readonly Heartbeat Instance = new();
    }

    private sealed class PathWanted
    {
        public static readonly PathWanted Instance = new();
    }

    /// <summary>The engine heard the peer through a relay under <paramref name="Key"/>, which its relay path does not name.</summary>
    private sealed record RelayedUnder(Curve25519PublicKey Key);

    private sealed class RelayKeyGraceOver
    {
        public static readonly RelayKeyGraceOver Instance = new();
    }

    /// <summary>Time to look again for the engine's peer, which did not exist when last looked for.</summary>
    private sealed class LookForEnginePeer
    {
        public static readonly LookForEnginePeer Instance = new();
    }

    /// <summary>How soon the engine's peer is looked for again when missing; doubling up to <see cref="EnginePeerLookMax"/>.</summary>
    private static readonly TimeSpan EnginePeerLookFirst = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan EnginePeerLookMax = TimeSpan.FromSeconds(10);
    // Looks in a row that found no engine peer.
    private int _enginePeerMisses;

    public PathFinder(PathContext context, PathPeer peer)
    {
        _context = context;
        _peer = peer;
        _relayKey = peer.NodeKey;
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props PropsFor(PathContext context, PathPeer peer) => Props.Create(() => new PathFinder(context, peer));

    private long Now => _context.Device.Clock.NowMs;

    protected override void PostRestart(Exception reason)
    {
        base.PostRestart(reason);
        _restarted = true;
        // Made again from the peer it was first given: the PathManager hands it the peer as it is now.
        Context.Parent.Tell(new PathFinderRestarted(_peer.Id));
    }

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
        if (_pathMtu > _context.Device.BaseMtu) Context.Parent.Tell(PathMtuChanged.Instance);
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
                if (keyChanged && !_restarted) Timers.StartSingleTimer("relay-key", RelayKeyGraceOver.Instance, RotatedRelayKeyGrace);
                else if (_restarted) _relayKey = _peer.NodeKey;
                _restarted = false;
                if (discoChanged)
                {
                    // A restarted peer: its old proofs mean nothing now.
                    _best = null;
                    _trustUntil = 0;
                    _outstanding.Clear();
                    foreach (var candidate in _candidates.Values) candidate.LastProbe = candidate.RoundAt = 0;
                    FullPing(force: true);
                }
                SetPath();
                break;
            case DiscoArrived arrived:
                if (arrived.Source.IsRelay) HeardThroughRelay(arrived.Source.RelayPeer);
                OnDisco(arrived);
                break;
            case RelayedUnder relayed:
                HeardThroughRelay(relayed.Key);
                break;
            case RelayKeyGraceOver:
                HeardThroughRelay(_peer.NodeKey);
                break;
            case Heartbeat:
                OnHeartbeat();
                break;
            case LookForEnginePeer:
                // Bound now: it takes the path chosen meanwhile (SetPath looks for it again, or keeps looking).
                SetPath();
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
                    foreach (var candidate in _candidates.Values)
                    {
                        candidate.LastPing = 0;
                        candidate.ProvenWireMtu = candidate.LastRoundResult = 0; // new links in between: nothing proven about their MTU
                        candidate.LastProbe = candidate.RoundAt = 0;
                    }
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
        if (!_context.Device.Peers.TryGetValue(_peer.NodeKey, out var peer))
        {
            // Not made yet (the tunnels apply the netmap on their own), or being replaced after a rotation. Nothing else
            // would look again while the heartbeat is idle: the peer's packets could never wake a finder not bound to it.
            if (!Timers.IsTimerActive(nameof(LookForEnginePeer)))
                Timers.StartSingleTimer(nameof(LookForEnginePeer), LookForEnginePeer.Instance,
                    Net.RetryPause.Doubling(EnginePeerLookFirst, EnginePeerLookMax, _enginePeerMisses++));
            return null;
        }
        if (!ReferenceEquals(peer, _bound))
        {
            _bound = peer;
            _enginePeerMisses = 0;
            Timers.Cancel(nameof(LookForEnginePeer));
            peer.PathManaged = true;
            peer.PathSignals = _signals ??= new Signals(Self);
            // Bound while the heartbeat is idle: its first packet wakes it.
            if (!_heartbeat) peer.MarkPathIdle();
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
        FinishProbeRounds(now);
        if (_best is { } best) SendPing(best);
        var trusted = _best is not null && now < _trustUntil;
        if (!trusted || _lastFullPing == 0 || (_bestLatency > GoodEnoughLatencyMs && now - _lastFullPing >= UpgradeIntervalMs)) FullPing(force: false);
        if (trusted && ProbeDue(_best!, now)) ProbeMtu(_best!);
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
        _outstanding[Convert.ToHexString(tx)] = (address, Now, 0);
        return _context.Device.SendDatagram(new Endpoint(address), packet);
    }

    private bool ProbeDue(IPEndPoint address, long now) =>
        CandidateFor(address) is { RoundAt: 0 } candidate && (candidate.LastProbe == 0 || now - candidate.LastProbe >= MtuProbeIntervalMs);

    /// <summary>
    /// Sends one ping per probe size above what the configured MTU already needs, padded to that outer
    /// size and with Don't Fragment set. Sizes the kernel already knows are too big are not sent.
    /// </summary>
    private void ProbeMtu(IPEndPoint address)
    {
        if (_box is null) return;
        var now = Now;
        var candidate = CandidateFor(address);
        candidate.LastProbe = candidate.RoundAt = now;
        candidate.RoundBest = candidate.RoundPending = 0;
        var headers = IpAndUdpHeaders(address);
        var configured = _context.Device.BaseMtu + WireGuardOverhead + headers;
        var endpoint = new Endpoint(address);
        foreach (var size in ProbeWireSizes)
        {
            if (size <= configured) continue;
            var tx = RandomNumberGenerator.GetBytes(DiscoPacket.TxIdSize);
            var padding = size - headers - DiscoPacket.PingSize(0);
            var packet = DiscoPacket.Seal(new DiscoPing(tx, _context.NodeKey, padding), _context.Disco.PublicKey, _box);
            if (!_context.Device.SendProbe(endpoint, packet)) continue;
            _outstanding[Convert.ToHexString(tx)] = (address, now, size);
            candidate.RoundPending++;
        }
        if (candidate.RoundPending == 0) FinishProbeRound(address, candidate);
    }

    /// <summary>Finishes the probe rounds whose pongs had their time.</summary>
    private void FinishProbeRounds(long now)
    {
        foreach (var (address, candidate) in _candidates)
            if (candidate.RoundAt != 0 && now - candidate.RoundAt >= PingTimeoutMs) FinishProbeRound(address, candidate);
    }

    /// <summary>A finished round's largest answered size is what the path carries now (it may have shrunk).</summary>
    private void FinishProbeRound(IPEndPoint address, Candidate candidate)
    {
        candidate.ProvenWireMtu = candidate.RoundBest;
        candidate.RoundAt = 0;
        if (candidate.RoundBest == candidate.LastRoundResult) return;
        candidate.LastRoundResult = candidate.RoundBest;
        _log.Info("Path MTU probe to {0} at {1}: {2}", _peer.Name, address,
            candidate.RoundBest == 0 ? "no probe answered" : $"{candidate.RoundBest} bytes on the wire answered");
    }

    private static int IpAndUdpHeaders(IPEndPoint address) => (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 20 : 40) + 8;

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
        if (sent.WireSize > 0)
        {
            // A larger size answered counts at once; the round's verdict (which may be smaller) comes when it ends.
            candidate.RoundBest = Math.Max(candidate.RoundBest, sent.WireSize);
            candidate.ProvenWireMtu = Math.Max(candidate.ProvenWireMtu, sent.WireSize);
            if (candidate.RoundAt != 0 && --candidate.RoundPending == 0) FinishProbeRound(from, candidate);
        }
        var trusted = _best is not null && now < _trustUntil;
        if (_best is null || !trusted || Better(latency, _bestLatency)) _best = from;
        if (from.Equals(_best))
        {
            _bestLatency = latency;
            _trustUntil = now + TrustMs;
            if (ProbeDue(from, now)) ProbeMtu(from);
        }
        SetPath();
    }

    /// <summary>A clearly faster path wins (10% hysteresis, so two similar paths do not flap).</summary>
    private static bool Better(double latency, double current) => latency < current * 0.9;

    private Endpoint? RelayEndpoint() =>
        _context.RelaysAvailable && _peer.HomeRegion > 0 ? Endpoint.ForRelay(_peer.HomeRegion, _relayKey) : null;

    /// <summary>
    /// The peer spoke through a relay under its current key (or the grace for its old one ran out): its
    /// connection under that key is up, so that is where it is addressed now.
    /// </summary>
    private void HeardThroughRelay(Curve25519PublicKey key)
    {
        if (key != _peer.NodeKey || _relayKey == key) return;
        _relayKey = key;
        Timers.Cancel("relay-key");
        SetPath();
    }

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
        var mtu = PathMtu(_best);
        var enginePeer = EnginePeer();
        if (enginePeer is not null) enginePeer.PathMtu = mtu;
        var mtuChanged = mtu != _pathMtu;
        _pathMtu = mtu;
        if (enginePeer is { } peer && wanted is not null && !Equals(peer.Endpoint, wanted))
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
            kind == "direct" && now < _trustUntil ? _bestLatency : null, _pathSince, mtu));
        if (mtuChanged) Context.Parent.Tell(PathMtuChanged.Instance); // after the status it reads
    }

    /// <summary>The largest inner packet the best direct path proved it carries; the configured MTU when there is no such proof.</summary>
    private int PathMtu(IPEndPoint? best)
    {
        var configured = _context.Device.BaseMtu;
        if (best is null || !_candidates.TryGetValue(best, out var candidate) || candidate.ProvenWireMtu == 0) return configured;
        var proven = candidate.ProvenWireMtu - IpAndUdpHeaders(best) - WireGuardOverhead;
        return Math.Max(configured, Math.Min(proven, WireGuardDevice.MaxMtu));
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

        public void RelayedUnder(Peer peer, Curve25519PublicKey key) => finder.Tell(new PathFinder.RelayedUnder(key));
    }
}
