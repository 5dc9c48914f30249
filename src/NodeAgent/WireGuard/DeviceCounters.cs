namespace Weft.NodeAgent.WireGuard;

/// <summary>Why packets were dropped. Bad input is counted here and never disturbs a live session.</summary>
public enum DropReason
{
    /// <summary>Wrong size or type for a WireGuard message, or a truncated datagram.</summary>
    Malformed,
    /// <summary>A handshake message whose mac1 is not for our public key.</summary>
    BadMac1,
    /// <summary>Under load without a valid mac2: answered with a cookie reply instead.</summary>
    CookieRequired,
    /// <summary>Under load, over the per-source handshake rate.</summary>
    RateLimited,
    /// <summary>The handshake queue was full.</summary>
    HandshakeQueueFull,
    /// <summary>An initiation from an unknown key, with a stale (replayed) timestamp, or too soon after the last.</summary>
    HandshakeRejected,
    /// <summary>A response or cookie reply for no handshake of ours, or that does not authenticate.</summary>
    UnexpectedHandshake,
    /// <summary>A transport packet for an index we do not have.</summary>
    UnknownIndex,
    /// <summary>A transport packet on a keypair past REJECT_AFTER_TIME or REJECT_AFTER_MESSAGES.</summary>
    ExpiredKeypair,
    /// <summary>A transport packet that failed ChaCha20-Poly1305 authentication.</summary>
    BadAuthentication,
    /// <summary>A counter seen before, or older than the replay window.</summary>
    Replayed,
    /// <summary>A decrypted packet whose inner source is not one of the sending peer's allowed IPs.</summary>
    DisallowedSource,
    /// <summary>A decrypted packet that is not a whole IPv4 or IPv6 packet.</summary>
    InvalidInnerPacket,
    /// <summary>A decrypted packet the packet filter does not allow (no rule, and not return traffic).</summary>
    FilterDenied,
    /// <summary>An outbound packet whose destination matches no peer's allowed IPs.</summary>
    NoRoute,
    /// <summary>An outbound packet for a peer with no known endpoint.</summary>
    NoEndpoint,
    /// <summary>The TUN device refused a packet (queue full).</summary>
    TunWriteFailed,
    /// <summary>A datagram that is neither WireGuard nor claimed by another protocol on the socket.</summary>
    NotWireGuard,
    /// <summary>A packet for a relay path that no relay connection could take (not connected, or its queue full).</summary>
    NoRelay,
    /// <summary>An outbound packet bigger than its peer's path MTU with Don't Fragment set (or IPv6): answered with an ICMP "too big".</summary>
    TooBig,
}

public sealed class DeviceCounters
{
    private readonly long[] _drops = new long[Enum.GetValues<DropReason>().Length];
    private long _loopRestarts;

    /// <summary>How many times a packet loop (TUN read, UDP receive, handshake check) failed and was started again.</summary>
    public long LoopRestarts => Interlocked.Read(ref _loopRestarts);

    public void LoopRestarted() => Interlocked.Increment(ref _loopRestarts);

    public void Drop(DropReason reason) => Interlocked.Increment(ref _drops[(int)reason]);

    public long this[DropReason reason] => Interlocked.Read(ref _drops[(int)reason]);

    public long TotalDrops => _drops.Sum(d => Interlocked.Read(ref d));

    public IReadOnlyDictionary<DropReason, long> Snapshot() =>
        Enum.GetValues<DropReason>().ToDictionary(r => r, r => this[r]);
}
