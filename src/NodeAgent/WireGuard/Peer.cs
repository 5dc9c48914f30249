using System.Collections.Concurrent;
using System.Text;
using Weft.Contracts.Crypto;
using Weft.Contracts.Keys;

namespace Weft.NodeAgent.WireGuard;

/// <summary>What the packet path tells a peer's PathFinder.</summary>
public interface IPathSignals
{
    /// <summary>Traffic started again after the path went idle.</summary>
    void PathWanted(Peer peer);

    /// <summary>
    /// An authenticated packet came through a relay from the peer's own key, while its relay path names
    /// another (the key it had before a rotation): its connection under the new key is up.
    /// </summary>
    void RelayedUnder(Peer peer, Weft.Contracts.Keys.Curve25519PublicKey key);
}

internal sealed class NoPathSignals : IPathSignals
{
    public static readonly NoPathSignals Instance = new();

    public void PathWanted(Peer peer) { }

    public void RelayedUnder(Peer peer, Weft.Contracts.Keys.Curve25519PublicKey key) { }
}

/// <summary>What the packet path tells a peer's owner (its PeerTunnel actor). Called rarely: once per handshake at most.</summary>
public interface IPeerSignals
{
    /// <summary>A packet is waiting for a session, or the current one is due for rekeying.</summary>
    void HandshakeNeeded(Peer peer);

    /// <summary>The responder received the first packet on its "next" keypair, which is now current.</summary>
    void KeypairConfirmed(Peer peer);

    /// <summary>The path finder moved the peer to another endpoint: a handshake sent into the old one is sent again.</summary>
    void EndpointMoved(Peer peer);

    /// <summary>A keepalive or handshake timer started while the tunnel had none armed.</summary>
    void TimersStarted(Peer peer);
}

/// <summary>
/// One configured peer: its identity and settings, the keypair slots the packet path reads, the
/// packets waiting for a session, and the timestamps the timers are computed from. The packet path
/// only reads fields and writes timestamps and counters; everything else is changed by the peer's
/// PeerTunnel actor (handshakes, timers) or by configuration.
/// </summary>
public sealed class Peer
{
    private static readonly byte[] LabelMac1 = Encoding.ASCII.GetBytes("mac1----");
    private static readonly byte[] LabelCookie = Encoding.ASCII.GetBytes("cookie--");

    private readonly IndexTable _indices;
    private readonly ConcurrentQueue<byte[]> _staged = new();
    private int _stagedCount;
    private volatile Endpoint? _endpoint;
    private volatile Keypair? _current;
    private volatile Keypair? _next;
    private Keypair? _previous;
    private int _handshakeRequested;
    private long _rxBytes, _txBytes, _handshakesCompleted;

    // Timer inputs (EngineClock milliseconds; 0 = never).
    private long _lastAuthenticatedSent, _lastAuthenticatedReceived;
    private long _firstUnansweredDataSent, _firstUnansweredDataReceived;
    private long _lastHandshakeSent;

    public Peer(Curve25519PublicKey publicKey, IndexTable indices)
    {
        _indices = indices;
        PublicKey = publicKey;
        Cookies = CookiesFor(publicKey);
    }

    /// <summary>The peer's static key. It changes only when the peer rotates its node key (<see cref="ChangePublicKey"/>).</summary>
    public Curve25519PublicKey PublicKey { get; private set; }

    private static CookieGenerator CookiesFor(Curve25519PublicKey publicKey)
    {
        Span<byte> pub = stackalloc byte[32];
        publicKey.CopyTo(pub);
        var mac1Key = new byte[32];
        Blake2s.Hash(LabelMac1, pub, mac1Key);
        var cookieKey = new byte[32];
        Blake2s.Hash(LabelCookie, pub, cookieKey);
        return new CookieGenerator(mac1Key, cookieKey);
    }

    /// <summary>
    /// The peer rotated its node key: the same device, a new static key. Its sessions stay (they were
    /// authenticated by the old key and expire on their own schedule), so traffic keeps flowing
    /// while the next handshake proves the new key. Only the device may call this (it re-indexes the peer).
    /// </summary>
    internal void ChangePublicKey(Curve25519PublicKey publicKey, Curve25519PrivateKey? ourKey)
    {
        PublicKey = publicKey;
        Cookies = CookiesFor(publicKey);
        LastInitiationTimestamp = null;
        PrecomputeStaticStatic(ourKey);
    }

    private volatile byte[]? _staticStatic;

    /// <summary>
    /// Caches DH(our static, this peer's static), the one X25519 of every handshake that never
    /// changes (wireguard-go precomputedStaticStatic). Null when our key is unset or theirs is invalid.
    /// </summary>
    public void PrecomputeStaticStatic(Curve25519PrivateKey? ourKey)
    {
        if (ourKey is null)
        {
            _staticStatic = null;
            return;
        }
        var shared = new byte[32];
        _staticStatic = ourKey.TryAgree(PublicKey, shared) ? shared : null;
    }

    /// <summary>Copies the cached static-static secret; false if there is none.</summary>
    public bool TryCopyStaticStatic(Span<byte> destination)
    {
        var cached = _staticStatic;
        if (cached is null) return false;
        cached.CopyTo(destination);
        return true;
    }

    /// <summary>32 bytes; all zeros when no pre-shared key is set (WireGuard's convention).</summary>
    public byte[] PresharedKey { get; set; } = new byte[32];

    public Endpoint? Endpoint
    {
        get => _endpoint;
        set => _endpoint = value;
    }

    /// <summary>
    /// The path to this peer is chosen by its PathFinder (disco, relays), not by roaming: packets that
    /// arrive from another address, or handshakes through a relay, do not move <see cref="Endpoint"/>.
    /// Off for peers configured by hand (wg-quick, UAPI), which roam as WireGuard does.
    /// </summary>
    public bool PathManaged { get; set; }

    private volatile int _pathMtu;

    /// <summary>
    /// The largest inner packet this peer's current path carries, as its PathFinder proved it; 0 until
    /// something is proven: the device's configured MTU. A bigger packet is answered with an ICMP
    /// "too big" at the TUN, or fragmented if it is IPv4 without DF (see <see cref="Net.TooBig"/>).
    /// </summary>
    public int PathMtu
    {
        get => _pathMtu;
        set => _pathMtu = value;
    }

    private int _pathIdle;

    /// <summary>
    /// Set by the PathFinder when it stops its heartbeat (no traffic for a while); the first packet
    /// sent afterwards clears it and calls <see cref="IPathSignals.PathWanted"/> once, so the
    /// heartbeat is armed only while the peer is in use.
    /// </summary>
    public void MarkPathIdle() => Volatile.Write(ref _pathIdle, 1);

    internal void OnPathUse()
    {
        if (Volatile.Read(ref _pathIdle) != 0 && Interlocked.Exchange(ref _pathIdle, 0) != 0) PathSignals.PathWanted(this);
    }

    private IPathSignals _pathSignals = NoPathSignals.Instance;

    /// <summary>Where <see cref="OnPathUse"/> reports (the PathFinder).</summary>
    public IPathSignals PathSignals
    {
        get => Volatile.Read(ref _pathSignals);
        set => Volatile.Write(ref _pathSignals, value);
    }

    /// <summary>A PathFinder hears this peer's packet path (false: nothing would wake its heartbeat).</summary>
    public bool HasPathFinder => PathSignals is not NoPathSignals;

    /// <summary>
    /// Stops reporting to <paramref name="owner"/>, if it is still the one reported to: a PathFinder
    /// that stops must not silence the one that replaced it (they stop and start on different threads).
    /// </summary>
    public void ReleasePathSignals(IPathSignals owner) => Interlocked.CompareExchange(ref _pathSignals, NoPathSignals.Instance, owner);

    /// <summary>Seconds; 0 turns persistent keepalive off.</summary>
    public int PersistentKeepaliveSeconds { get; set; }

    /// <summary>
    /// The netmap device this peer is (its id survives node-key rotations); null for a peer configured
    /// by hand (wg-quick, UAPI). Kept here, in the engine's peer table, so that whoever reconciles
    /// the netmap into peers (the TunnelSupervisor, restarted or not) learns it from the engine.
    /// </summary>
    public string? MeshId { get; set; }

    public IPeerSignals Signals { get; set; } = NoSignals.Instance;

    /// <summary>Adds mac1/mac2 to the handshake messages we send this peer, and keeps the cookie it gives us.</summary>
    public CookieGenerator Cookies { get; private set; }

    public Keypair? Current => _current;

    public Keypair? Next => _next;

    public Keypair? Previous { get { lock (KeypairLock) return _previous; } }

    internal object KeypairLock { get; } = new();

    public long RxBytes => Interlocked.Read(ref _rxBytes);

    public long TxBytes => Interlocked.Read(ref _txBytes);

    /// <summary>Wall time of the last completed handshake, for <c>wg show</c>.</summary>
    public DateTimeOffset? LastHandshake { get; internal set; }

    /// <summary>Handshakes completed with this peer (either side initiating), for the agent's metrics.</summary>
    public long HandshakesCompleted => Interlocked.Read(ref _handshakesCompleted);

    internal void CountHandshake() => Interlocked.Increment(ref _handshakesCompleted);

    public int StagedCount => Volatile.Read(ref _stagedCount);

    public long LastAuthenticatedSent => Interlocked.Read(ref _lastAuthenticatedSent);
    public long LastAuthenticatedReceived => Interlocked.Read(ref _lastAuthenticatedReceived);
    public long FirstUnansweredDataSent => Interlocked.Read(ref _firstUnansweredDataSent);
    public long FirstUnansweredDataReceived => Interlocked.Read(ref _firstUnansweredDataReceived);

    /// <summary>The TAI64N timestamp of the last initiation accepted from this peer (replay protection).</summary>
    public byte[]? LastInitiationTimestamp { get; internal set; }

    /// <summary>When the last initiation from this peer was accepted (flood protection).</summary>
    public long LastInitiationConsumed { get; internal set; }

    public long LastHandshakeSent
    {
        get => Interlocked.Read(ref _lastHandshakeSent);
        internal set => Interlocked.Exchange(ref _lastHandshakeSent, value);
    }

    // --- packet-path notifications (cheap: a read, and a write only on change) ---

    public void OnAuthenticatedSent(long now, int bytes)
    {
        Volatile.Write(ref _lastAuthenticatedSent, now);
        Interlocked.Add(ref _txBytes, bytes);
        if (Volatile.Read(ref _firstUnansweredDataReceived) != 0) Volatile.Write(ref _firstUnansweredDataReceived, 0);
    }

    public void OnDataSent(long now)
    {
        OnPathUse();
        if (Volatile.Read(ref _firstUnansweredDataSent) == 0 && Interlocked.CompareExchange(ref _firstUnansweredDataSent, now, 0) == 0)
            WakeTimers(now + PeerTimers.NewHandshakeAfterMs(Timings));
    }

    public void OnAuthenticatedReceived(long now, int bytes)
    {
        Volatile.Write(ref _lastAuthenticatedReceived, now);
        Interlocked.Add(ref _rxBytes, bytes);
        if (Volatile.Read(ref _firstUnansweredDataSent) != 0) Volatile.Write(ref _firstUnansweredDataSent, 0);
    }

    public void OnDataReceived(long now)
    {
        if (Volatile.Read(ref _firstUnansweredDataReceived) == 0 && Interlocked.CompareExchange(ref _firstUnansweredDataReceived, now, 0) == 0)
            WakeTimers(now + PeerTimers.PassiveKeepaliveAfterMs(Timings));
    }

    // When the PeerTunnel's next timer is armed (engine ms); 0 when nothing is armed, -1 when it has been woken.
    private long _timerArmedAt;

    /// <summary>The engine's timer constants (the device sets them).</summary>
    public WireGuardTimings Timings { get; init; } = WireGuardTimings.Default;

    /// <summary>
    /// A timer just started counting (data sent or received with nothing yet in reply), due at
    /// <paramref name="deadline"/>. The tunnel is woken only if its armed timer would fire later
    /// than that (or none is armed); otherwise that earlier timer re-evaluates everything when it
    /// fires. Under steady traffic new deadlines only move forward, so the packet path sends
    /// nothing. (Interlocked operations on both sides make sure that a timer started while the
    /// tunnel disarms is never missed: see <see cref="DisarmTimers"/>.)
    /// </summary>
    private void WakeTimers(long deadline)
    {
        var armed = Interlocked.Read(ref _timerArmedAt);
        if (armed == -1 || (armed != 0 && armed <= deadline)) return;
        if (Interlocked.CompareExchange(ref _timerArmedAt, -1, armed) == armed) Signals.TimersStarted(this);
    }

    /// <summary>When the tunnel's timer is armed for (engine ms); 0 when nothing is armed.</summary>
    public long TimerArmedAt => Interlocked.Read(ref _timerArmedAt);

    /// <summary>The tunnel armed its timer for <paramref name="at"/>.</summary>
    internal void TimersArmed(long at) => Interlocked.Exchange(ref _timerArmedAt, at);

    /// <summary>The tunnel has nothing armed; from now on a starting timer wakes it.</summary>
    internal void DisarmTimers() => Interlocked.Exchange(ref _timerArmedAt, 0);

    internal void ClearUnansweredDataSent() => Volatile.Write(ref _firstUnansweredDataSent, 0);

    internal void ClearUnansweredDataReceived() => Volatile.Write(ref _firstUnansweredDataReceived, 0);

    /// <summary>Asks the owner for a handshake, at most once until the owner has handled it.</summary>
    public void RequestHandshake()
    {
        if (Interlocked.Exchange(ref _handshakeRequested, 1) == 0) Signals.HandshakeNeeded(this);
    }

    internal void HandshakeRequestHandled() => Volatile.Write(ref _handshakeRequested, 0);

    // --- staged packets ---

    /// <summary>Keeps a copy of an outbound packet until a session exists; the oldest is dropped past 128.</summary>
    public void Stage(ReadOnlySpan<byte> packet)
    {
        _staged.Enqueue(packet.ToArray());
        if (Interlocked.Increment(ref _stagedCount) > Constants.StagedQueueSize && _staged.TryDequeue(out _))
            Interlocked.Decrement(ref _stagedCount);
    }

    public bool TryTakeStaged(out byte[] packet)
    {
        if (!_staged.TryDequeue(out packet!)) return false;
        Interlocked.Decrement(ref _stagedCount);
        return true;
    }

    public void ClearStaged()
    {
        while (TryTakeStaged(out _)) { }
    }

    // --- keypair slots (wireguard-go noise-protocol.go BeginSymmetricSession, ReceivedWithKeypair) ---

    /// <summary>
    /// Installs a fresh keypair. The initiator uses it at once (current; the old current becomes
    /// previous). The responder keeps it as next until the initiator's first packet confirms it.
    /// </summary>
    public void InstallKeypair(Keypair keypair)
    {
        var retired = new List<Keypair>(2);
        lock (KeypairLock)
        {
            if (keypair.IsInitiator)
            {
                if (_next is { } next)
                {
                    _next = null;
                    if (_previous is not null) retired.Add(_previous);
                    _previous = next;
                    if (_current is not null) retired.Add(_current);
                }
                else
                {
                    if (_previous is not null) retired.Add(_previous);
                    _previous = _current;
                }
                _current = keypair;
            }
            else
            {
                if (_next is not null) retired.Add(_next);
                _next = keypair;
                if (_previous is not null) retired.Add(_previous);
                _previous = null;
            }
        }
        foreach (var old in retired) Retire(old);
    }

    /// <summary>Promotes "next" to current when a packet arrives on it. True if this packet was the confirmation.</summary>
    public bool ReceivedWithKeypair(Keypair keypair)
    {
        if (_next != keypair) return false;
        Keypair? retired;
        lock (KeypairLock)
        {
            if (_next != keypair) return false;
            retired = _previous;
            _previous = _current;
            _current = keypair;
            _next = null;
        }
        if (retired is not null) Retire(retired);
        return true;
    }

    /// <summary>Forgets every keypair (after 3 × RejectAfterTime, or when the peer is removed).</summary>
    public void ZeroKeypairs()
    {
        Keypair?[] all;
        lock (KeypairLock)
        {
            all = [_previous, _current, _next];
            _previous = null;
            _current = null;
            _next = null;
        }
        foreach (var keypair in all) if (keypair is not null) Retire(keypair);
    }

    private void Retire(Keypair keypair)
    {
        _indices.Remove(keypair.LocalIndex);
        keypair.Dispose();
    }

    /// <summary>The key as people read it in Weft's logs and commands (<c>nodekey:</c> and hex, as Tailscale prints it).</summary>
    public override string ToString() => new Contracts.Keys.NodeKey(PublicKey).ToString();

    private sealed class NoSignals : IPeerSignals
    {
        public static readonly NoSignals Instance = new();

        public void HandshakeNeeded(Peer peer) { }

        public void KeypairConfirmed(Peer peer) { }

        public void EndpointMoved(Peer peer) { }

        public void TimersStarted(Peer peer) { }
    }
}
