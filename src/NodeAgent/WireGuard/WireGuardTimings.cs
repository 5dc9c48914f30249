namespace Weft.NodeAgent.WireGuard;

/// <summary>
/// The protocol's timer constants, overridable for tests and for forcing a rekey in interop runs.
/// Production uses <see cref="Default"/>, which is exactly wireguard-go's.
/// </summary>
public sealed record WireGuardTimings
{
    public static readonly WireGuardTimings Default = new();

    public TimeSpan RekeyAfterTime { get; init; } = Constants.RekeyAfterTime;
    public TimeSpan RejectAfterTime { get; init; } = Constants.RejectAfterTime;
    public TimeSpan RekeyTimeout { get; init; } = Constants.RekeyTimeout;
    public TimeSpan KeepaliveTimeout { get; init; } = Constants.KeepaliveTimeout;
    public int RekeyTimeoutJitterMaxMs { get; init; } = Constants.RekeyTimeoutJitterMaxMs;
    public int MaxTimerHandshakes { get; init; } = Constants.MaxTimerHandshakes;
    public ulong RekeyAfterMessages { get; init; } = Constants.RekeyAfterMessages;

    public TimeSpan ZeroKeyMaterialAfter => RejectAfterTime * 3;

    public TimeSpan LastMinuteHandshakeAge => RejectAfterTime - KeepaliveTimeout - RekeyTimeout;
}
