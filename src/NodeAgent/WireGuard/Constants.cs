namespace Weft.NodeAgent.WireGuard;

/// <summary>Every WireGuard protocol constant in one place. Values from wireguard-go device/constants.go and the whitepaper §6.</summary>
public static class Constants
{
    // wireguard-go: RekeyAfterMessages = 1 << 60
    public const ulong RekeyAfterMessages = 1UL << 60;

    // wireguard-go: RejectAfterMessages = 1<<64 - 1<<13 - 1 (counters near the top are never used)
    public const ulong RejectAfterMessages = ulong.MaxValue - (1UL << 13);

    // wireguard-go: RekeyAfterTime = 120 s
    public static readonly TimeSpan RekeyAfterTime = TimeSpan.FromSeconds(120);

    // wireguard-go: RekeyAttemptTime = 90 s (handshake retries give up after this)
    public static readonly TimeSpan RekeyAttemptTime = TimeSpan.FromSeconds(90);

    // wireguard-go: RekeyTimeout = 5 s (retransmit interval, and the minimum gap between initiations)
    public static readonly TimeSpan RekeyTimeout = TimeSpan.FromSeconds(5);

    // wireguard-go: RekeyTimeoutJitterMaxMs = 334 (added to retransmit and new-handshake timers)
    public const int RekeyTimeoutJitterMaxMs = 334;

    // wireguard-go: RejectAfterTime = 180 s (a keypair is unusable after this)
    public static readonly TimeSpan RejectAfterTime = TimeSpan.FromSeconds(180);

    // wireguard-go: KeepaliveTimeout = 10 s (passive keepalive after receiving data and sending nothing)
    public static readonly TimeSpan KeepaliveTimeout = TimeSpan.FromSeconds(10);

    // wireguard-go: CookieRefreshTime = 120 s (cookie secret rotation and cookie validity)
    public static readonly TimeSpan CookieRefreshTime = TimeSpan.FromSeconds(120);

    // wireguard-go: HandshakeInitationRate = 1 s / 50 (accept at most one initiation per peer per 20 ms)
    public static readonly TimeSpan HandshakeInitiationRate = TimeSpan.FromMilliseconds(20);

    // wireguard-go: MaxTimerHandshakes = 90 / 5 = 18 retries before giving up
    public const int MaxTimerHandshakes = 18;

    // The whitepaper: zero all key material 3 × RejectAfterTime after the last session was derived.
    public static readonly TimeSpan ZeroKeyMaterialAfter = RejectAfterTime * 3;

    // A receiving initiator rekeys once when its keypair is this old ("last-minute handshake").
    public static readonly TimeSpan LastMinuteHandshakeAge = RejectAfterTime - KeepaliveTimeout - RekeyTimeout;

    // wireguard-go: QueueHandshakeSize = 1024; under load from 1/8 of it, for 1 s after.
    public const int HandshakeQueueSize = 1024;
    public const int UnderLoadQueueThreshold = HandshakeQueueSize / 8;
    public static readonly TimeSpan UnderLoadAfterTime = TimeSpan.FromSeconds(1);

    // wireguard-go: QueueStagedSize = 128 packets wait per peer for a handshake.
    public const int StagedQueueSize = 128;

    // wireguard-go ratelimiter: 20 handshake packets per second per source, burst 5.
    public const int RateLimitPacketsPerSecond = 20;
    public const int RateLimitBurst = 5;

    // wireguard-go: MaxPeers = 1 << 16
    public const int MaxPeers = 1 << 16;

    // Replay window: (128 - 1) × 64 counters (wireguard-go replay.go; the Linux kernel's too).
    public const int ReplayWindowSize = (128 - 1) * 64;

    // wireguard-go device/tun.go DefaultMTU
    public const int DefaultMtu = 1420;

    // Largest UDP payload handled (wireguard-go MaxMessageSize).
    public const int MaxMessageSize = 65535;

    public const int PaddingMultiple = 16;
}
