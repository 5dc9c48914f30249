using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Contracts.Keys;
using Weft.NodeAgent.Filter;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;

namespace Weft.NodeAgent.WireGuard;

/// <summary>
/// Carries packets over relays (the agent's RelayClients): non-blocking, and safe from any thread.
/// False when the packet could not be queued (no connection to that region yet, or a full queue).
/// </summary>
public interface IRelayTransport
{
    bool Send(int region, Curve25519PublicKey destination, ReadOnlySpan<byte> packet);
}

/// <summary>A handshake message that passed the cheap checks, on its way to the handshake actors.</summary>
public sealed record HandshakePacket(uint Type, byte[] Message, Endpoint Source)
{
    /// <summary>The sink it was handed to, whose backlog it counts in until it is processed.</summary>
    internal HandshakeHandoff? Handoff { get; set; }
}

/// <summary>
/// One <see cref="WireGuardDevice.HandshakeSink"/> and the messages handed to it and not yet processed.
/// Each sink counts its own: a sink that is replaced (its actor stopped or restarted) takes its
/// backlog with it, so messages it never processed cannot hold the device under load for good.
/// </summary>
internal sealed class HandshakeHandoff(Action<HandshakePacket> sink)
{
    public readonly Action<HandshakePacket> Sink = sink;
    public int Backlog;
}

/// <summary>
/// One WireGuard interface: the identity, the peers and their allowed IPs, and the two packet paths.
/// <list type="bullet">
/// <item>TUN → UDP: read a batch from the TUN, find each packet's peer, seal it with the current
/// keypair, send the batch with one sendmmsg.</item>
/// <item>UDP → TUN: receive a batch with one recvmmsg, open each transport packet in place, check
/// replay and source, write it to the TUN; queue handshake messages for the handshake thread.</item>
/// <item>Handshake thread: mac1, and under load mac2, cookie replies and per-source rate limits;
/// what passes goes to <see cref="HandshakeSink"/>.</item>
/// </list>
/// Each path runs on its own thread and never goes through an actor mailbox. Handshakes and timers
/// belong to the actors (TunnelSupervisor, PeerTunnel), which call the Send* helpers here.
/// </summary>
public sealed partial class WireGuardDevice : IDisposable
{
    public const int TransportHeadroom = Messages.TransportHeaderSize;
    private const int BatchSize = 64;

    private readonly ITunDevice _tun;
    private volatile UdpTransport _udp;
    private readonly ILogger _log;
    private readonly List<Thread> _threads = new();
    private volatile bool _stopping;
    /// <summary>Set when the device stops: ends a failed loop's pause at once. Never disposed, as a loop may still wait on it.</summary>
    private readonly ManualResetEventSlim _stop = new();
    private long _underLoadUntilMs;
    private volatile HandshakeHandoff? _handshakeHandoff;
    /// <summary>Handshake messages between the receive thread and the handshake thread (wireguard-go's handshake queue).</summary>
    private readonly BlockingCollection<HandshakePacket> _handshakeInbox = new(Constants.HandshakeQueueSize);

    public WireGuardDevice(ITunDevice tun, UdpTransport udp, EngineClock? clock = null, WireGuardTimings? timings = null, ILogger? log = null)
    {
        _tun = tun;
        BaseMtu = tun.Mtu;
        _udp = udp;
        Clock = clock ?? EngineClock.System;
        Timings = timings ?? WireGuardTimings.Default;
        _log = log ?? NullLogger.Instance;
        Cookies = new CookieChecker(Clock);
        RateLimiter = new RateLimiter(Clock);
    }

    public EngineClock Clock { get; }

    public WireGuardTimings Timings { get; }

    public string Name => _tun.Name;

    /// <summary>The TUN's MTU now: the configured one, or more once path MTU probing proved more (<see cref="SetMtu"/>).</summary>
    public int Mtu => _tun.Mtu;

    /// <summary>The TUN's MTU as configured: what every path carries until probing proves more.</summary>
    public int BaseMtu { get; }

    /// <summary>
    /// The largest inner packet the engine's buffers take; path MTU probing stops there (an outer
    /// packet of 1500 bytes on IPv4).
    /// </summary>
    public const int MaxMtu = 1440;

    /// <summary>The largest MTU the TUN can have: what the packet buffers are sized for.</summary>
    private int LargestMtu => Math.Max(BaseMtu, MaxMtu);

    /// <summary>Changes the TUN's MTU (between <see cref="BaseMtu"/> and <see cref="MaxMtu"/>). False if the system refused.</summary>
    public bool SetMtu(int mtu) => mtu >= Math.Min(BaseMtu, MaxMtu) && mtu <= LargestMtu && _tun.TrySetMtu(mtu);

    public int ListenPort => _udp.Port;

    public Curve25519PrivateKey? PrivateKey { get; private set; }

    public ConcurrentDictionary<Curve25519PublicKey, Peer> Peers { get; } = new();

    public AllowedIps<Peer> AllowedIps { get; } = new();

    public IndexTable Indices { get; } = new();

    private volatile TrafficFilter? _filter;

    /// <summary>
    /// The inbound packet filter the coordinator pushes; null lets everything in (standalone mode,
    /// like plain WireGuard). Replaced atomically when the netmap changes.
    /// </summary>
    public TrafficFilter? Filter
    {
        get => _filter;
        set => _filter = value;
    }

    private volatile TunnelPinger? _pinger;

    /// <summary>Catches the replies to the agent's own pings (<c>weft-agent ping</c>); null in standalone mode.</summary>
    public TunnelPinger? Pinger
    {
        get => _pinger;
        set => _pinger = value;
    }

    /// <summary>Flows this device opened: their return traffic passes the filter.</summary>
    public FlowTracker Flows { get; } = new();

    public CookieChecker Cookies { get; }

    public RateLimiter RateLimiter { get; }

    public DeviceCounters Counters { get; } = new();

    private readonly TaskCompletionSource<string> _interfaceGone = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Completes, with the reason, if the TUN interface is deleted while the device runs: every tunnel
    /// is dead from then on, and only creating the interface again (restarting the agent) revives them.
    /// </summary>
    public Task<string> InterfaceGone => _interfaceGone.Task;

    /// <summary>
    /// Receives handshake messages that passed mac1 (and, under load, mac2 and the rate limit); the
    /// receiver calls <see cref="HandshakeProcessed"/> for each. Setting it (a handshake actor that
    /// starts, or stops) starts a new backlog: messages handed to the previous sink count no more,
    /// whether it still processes them (an actor restarted in place keeps its mailbox) or lost them
    /// (a stopped actor's mailbox goes to dead letters).
    /// </summary>
    public Action<HandshakePacket>? HandshakeSink
    {
        get => _handshakeHandoff?.Sink;
        set => _handshakeHandoff = value is null ? null : new HandshakeHandoff(value);
    }

    /// <summary>
    /// Offered every datagram that is not WireGuard (disco, STUN share the socket). Returns true if
    /// it took the packet. Runs on the receive thread: it must be quick.
    /// </summary>
    public Func<ReadOnlyMemory<byte>, Endpoint, bool>? OtherPacketHandler
    {
        get => _otherPacketHandler;
        set => _otherPacketHandler = value;
    }

    private volatile Func<ReadOnlyMemory<byte>, Endpoint, bool>? _otherPacketHandler;

    /// <summary>
    /// Removes <paramref name="handler"/> and <paramref name="relays"/> if they are still the ones
    /// installed: an owner that stops must not remove what its successor installed.
    /// </summary>
    public void Uninstall(Func<ReadOnlyMemory<byte>, Endpoint, bool>? handler, IRelayTransport? relays)
    {
        Interlocked.CompareExchange(ref _otherPacketHandler, null, handler);
        Interlocked.CompareExchange(ref _relays, null, relays);
    }

    private volatile IRelayTransport? _relays;

    /// <summary>Where packets for relay endpoints go; null: such packets are dropped (no relays).</summary>
    public IRelayTransport? Relays
    {
        get => _relays;
        set => _relays = value;
    }

    /// <summary>
    /// Sends a path-MTU probe: a UDP datagram with Don't Fragment set, so that a link that cannot carry
    /// it drops it (and its router says so) instead of fragmenting it. False if it was not sent,
    /// which includes a size the kernel already knows the path cannot carry.
    /// </summary>
    public bool SendProbe(Endpoint endpoint, ReadOnlySpan<byte> datagram) => !endpoint.IsRelay && _udp.SendDontFragment(endpoint, datagram);

    /// <summary>
    /// Sends one datagram (WireGuard, disco or STUN) to a UDP endpoint, or through the relay for a
    /// relay endpoint. False if it could not be sent.
    /// </summary>
    public bool SendDatagram(Endpoint endpoint, ReadOnlySpan<byte> datagram)
    {
        if (!endpoint.IsRelay) return _udp.SendTo(endpoint, datagram);
        if (_relays?.Send(endpoint.RelayRegion, endpoint.RelayPeer, datagram) == true) return true;
        Counters.Drop(DropReason.NoRelay);
        return false;
    }

    /// <summary>
    /// A datagram a relay delivered from <paramref name="source"/> (a relay endpoint): it takes the
    /// same path as one from the UDP socket, and an IP packet inside goes to the TUN. Called on the
    /// relay connection's reader thread.
    /// </summary>
    public void ReceiveRelayed(byte[] datagram, Endpoint source)
    {
        var inner = ReceiveDatagram(datagram, source.Sockaddr, Clock.NowMs, source);
        if (inner > 0 && !_tun.Write(datagram.AsSpan(Messages.TransportHeaderSize, inner))) Counters.Drop(DropReason.TunWriteFailed);
    }

    /// <summary>The number of handshake messages handed to the current <see cref="HandshakeSink"/> and not yet processed.</summary>
    public int HandshakeBacklog => _handshakeHandoff is { } handoff ? Volatile.Read(ref handoff.Backlog) : 0;

    /// <summary>Handshake messages received and not yet checked.</summary>
    public int HandshakesQueued => _handshakeInbox.Count;

    /// <summary>The sink is done with a message (processed, or dropped): it leaves its sink's backlog.</summary>
    public void HandshakeProcessed(HandshakePacket packet)
    {
        if (packet.Handoff is { } handoff) Interlocked.Decrement(ref handoff.Backlog);
        packet.Handoff = null;
    }

    /// <param name="keepSessions">
    /// A node-key rotation: the sessions stay up until handshakes under the new key replace them, so
    /// that no packet is lost while peers learn the new key. Otherwise (a new identity, as
    /// wireguard-go does) every session is dropped.
    /// </param>
    public void SetPrivateKey(Curve25519PrivateKey? key, bool keepSessions = false)
    {
        PrivateKey = key;
        if (key is not null) Cookies.SetStaticKey(key.PublicKey);
        foreach (var peer in Peers.Values)
        {
            if (!keepSessions) peer.ZeroKeypairs();
            peer.PrecomputeStaticStatic(key);
        }
    }

    /// <summary>Re-indexes a peer under its rotated key (see <see cref="Peer.ChangePublicKey"/>). False if the new key is taken.</summary>
    public bool ChangePeerKey(Peer peer, Curve25519PublicKey newKey)
    {
        if (peer.PublicKey == newKey) return true;
        if (!Peers.TryAdd(newKey, peer)) return false;
        Peers.TryRemove(peer.PublicKey, out _);
        peer.ChangePublicKey(newKey, PrivateKey);
        return true;
    }

    public Peer AddPeer(Curve25519PublicKey publicKey)
    {
        if (Peers.Count >= Constants.MaxPeers && !Peers.ContainsKey(publicKey))
            throw new InvalidOperationException($"a device holds at most {Constants.MaxPeers} peers");
        return Peers.GetOrAdd(publicKey, key =>
        {
            var peer = new Peer(key, Indices) { Timings = Timings };
            peer.PrecomputeStaticStatic(PrivateKey);
            return peer;
        });
    }

    /// <summary>The precomputed static-static secret of whichever peer sent an initiation.</summary>
    public bool TryGetStaticStatic(Curve25519PublicKey remote, Span<byte> shared) =>
        Peers.TryGetValue(remote, out var peer) && peer.TryCopyStaticStatic(shared);

    public void RemovePeer(Peer peer)
    {
        if (!Peers.TryRemove(peer.PublicKey, out _)) return;
        AllowedIps.RemoveAll(peer);
        peer.ZeroKeypairs();
        peer.ClearStaged();
        Indices.RemoveAllOf(peer);
    }

    public void Start()
    {
        StartThread("wg-tun-read", RunTunReader);
        StartThread("wg-handshake", RunHandshakeChecker);
        StartReceivers(_udp);
    }

    private void StartReceivers(UdpTransport transport)
    {
        foreach (var socket in transport.Sockets) StartThread($"wg-udp-recv-{socket.AddressFamily}", () => RunUdpReceiver(transport, socket));
    }

    /// <summary>Moves the device to another UDP port (UAPI listen_port). The old sockets' receive loops end on their own.</summary>
    public void Rebind(int port)
    {
        var fresh = UdpTransport.Bind(port);
        var old = _udp;
        _udp = fresh;
        StartReceivers(fresh);
        old.Dispose();
    }

    public void SetFirewallMark(uint mark)
    {
        _udp.SetFirewallMark(mark);
        FirewallMark = mark;
    }

    public uint FirewallMark { get; private set; }

    private void StartThread(string name, Action loop)
    {
        var thread = new Thread(() => RunLoop(name, loop)) { IsBackground = true, Name = name };
        lock (_threads) _threads.Add(thread);
        thread.Start();
    }

    /// <summary>
    /// Runs a packet loop until the device stops. A loop that returns is done: its socket or TUN was
    /// closed. A loop that throws met something unexpected in one batch (a bug, or an error the system
    /// has never returned before). Every tunnel depends on these few loops, so the failure is logged,
    /// counted (<see cref="DeviceCounters.LoopRestarts"/>) and the loop runs again after a pause that
    /// grows from 100 ms to 5 s while it keeps failing.
    /// </summary>
    private void RunLoop(string name, Action loop)
    {
        var failuresInARow = 0;
        while (!_stopping)
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                loop();
                return;
            }
            catch (TunInterfaceGoneException gone) when (!_stopping)
            {
                // Nothing here can bring the interface back with its addresses and routes; whoever
                // created it must (the daemon exits, and its service manager starts it afresh).
                _log.LogCritical("WireGuard packet loop {Loop} stops: {Reason}", name, gone.Message);
                _interfaceGone.TrySetResult(gone.Message);
                return;
            }
            catch (Exception e)
            {
                if (_stopping) return;
                if (Stopwatch.GetElapsedTime(started) > LoopHealthyAfter) failuresInARow = 0;
                var pause = RetryPause.Doubling(LoopFirstPause, LoopMaxPause, failuresInARow++);
                Counters.LoopRestarted();
                _log.LogCritical(e, "WireGuard packet loop {Loop} failed; it runs again in {PauseMs} ms", name, pause.TotalMilliseconds);
                _stop.Wait(pause);
            }
        }
    }

    /// <summary>A loop that ran this long before failing starts its pauses from the shortest again.</summary>
    private static readonly TimeSpan LoopHealthyAfter = TimeSpan.FromSeconds(10);

    private static readonly TimeSpan LoopFirstPause = TimeSpan.FromMilliseconds(100), LoopMaxPause = TimeSpan.FromSeconds(5);

    /// <summary>True while handshake messages pile up (queued or with the actors): from 1/8 of the queue, and for a second after (wireguard-go).</summary>
    private bool IsUnderLoad(long now)
    {
        if (_handshakeInbox.Count + HandshakeBacklog >= Constants.UnderLoadQueueThreshold)
        {
            Volatile.Write(ref _underLoadUntilMs, now + (long)Constants.UnderLoadAfterTime.TotalMilliseconds);
            return true;
        }
        return now < Volatile.Read(ref _underLoadUntilMs);
    }

    // --- helpers the actors use to send ---

    /// <summary>
    /// Sends a handshake or cookie message to the peer's endpoint. Marked as sent before it leaves, as
    /// transport packets are: the initiator's first data can come back before this thread does, and
    /// the mark must not clear the wait for it to be answered.
    /// </summary>
    public bool SendHandshakeMessage(Peer peer, ReadOnlySpan<byte> message)
    {
        var endpoint = peer.Endpoint;
        if (endpoint is null) return false;
        peer.OnAuthenticatedSent(Clock.NowMs, message.Length);
        return SendDatagram(endpoint, message);
    }

    /// <summary>
    /// Seals and sends one packet (or a keepalive, when empty) with the current keypair. False when
    /// there is no usable keypair: the caller stages the packet and asks for a handshake.
    /// </summary>
    public bool SendTransport(Peer peer, ReadOnlySpan<byte> plaintext)
    {
        var now = Clock.NowMs;
        var keypair = peer.Current;
        var endpoint = peer.Endpoint;
        if (keypair is null || !keypair.CanSend(now, Timings) || endpoint is null) return false;

        var padded = Messages.PaddedLength(plaintext.Length, PathMtuOf(peer));
        var buffer = padded <= 2048 ? stackalloc byte[Messages.TransportHeaderSize + padded + Messages.TagSize] : new byte[Messages.TransportHeaderSize + padded + Messages.TagSize];
        plaintext.CopyTo(buffer[Messages.TransportHeaderSize..]);
        buffer.Slice(Messages.TransportHeaderSize + plaintext.Length, padded - plaintext.Length).Clear();
        if (!Seal(keypair, buffer, padded)) return false;
        // Marked before the packet leaves: the peer's answer can arrive before this thread is back from
        // the socket, and must find the mark to clear (or the timers start a handshake nobody needs).
        peer.OnAuthenticatedSent(now, buffer.Length);
        if (plaintext.Length > 0) peer.OnDataSent(now);
        CheckRekeyAfterSend(peer, keypair, now);
        return SendDatagram(endpoint, buffer);
    }

    /// <summary>Sends every staged packet of the peer, or a keepalive if none is staged. False if there is still no session.</summary>
    public bool SendStagedOrKeepalive(Peer peer)
    {
        if (peer.StagedCount == 0) return SendTransport(peer, default);
        while (peer.TryTakeStaged(out var packet))
        {
            if (!SendTransport(peer, packet))
            {
                peer.Stage(packet);
                return false;
            }
        }
        return true;
    }

    public void SendCookieReply(ReadOnlySpan<byte> message, uint type, Endpoint source)
    {
        Span<byte> reply = stackalloc byte[Messages.CookieReplySize];
        Cookies.CreateReply(message, type, source.Address, reply);
        SendDatagram(source, reply);
    }

    /// <summary>Writes the transport header and seals the padded plaintext that follows it, in place.</summary>
    private bool Seal(Keypair keypair, Span<byte> packet, int paddedLength)
    {
        var counter = keypair.NextCounter();
        if (counter >= Constants.RejectAfterMessages) return false;
        Messages.WriteHeader(packet, Messages.TypeTransport);
        Messages.WriteIndex(packet, Messages.TransportReceiver, keypair.RemoteIndex);
        BinaryPrimitives.WriteUInt64LittleEndian(packet[Messages.TransportCounter..], counter);
        var body = packet.Slice(Messages.TransportHeaderSize, paddedLength + Messages.TagSize);
        try
        {
            keypair.Seal(counter, body[..paddedLength], body);
            return true;
        }
        catch (ObjectDisposedException)
        {
            return false; // zeroed between the check and the seal
        }
    }

    /// <summary>wireguard-go keepKeyFreshSending: the initiator rekeys after REKEY_AFTER_TIME, anyone after REKEY_AFTER_MESSAGES.</summary>
    private void CheckRekeyAfterSend(Peer peer, Keypair keypair, long now)
    {
        var stale = keypair.SentCount > Timings.RekeyAfterMessages ||
                    (keypair.IsInitiator && keypair.AgeMs(now) > Timings.RekeyAfterTime.TotalMilliseconds);
        if (stale && now - peer.LastHandshakeSent >= Timings.RekeyTimeout.TotalMilliseconds) peer.RequestHandshake();
    }

    public void Dispose()
    {
        _stopping = true;
        _stop.Set();
        Thread[] threads;
        lock (_threads) threads = _threads.ToArray();
        foreach (var thread in threads) thread.Join(TimeSpan.FromSeconds(2));
        _tun.Dispose();
        _udp.Dispose();
        foreach (var peer in Peers.Values) peer.ZeroKeypairs();
        PrivateKey?.Dispose();
    }
}
