namespace Weft.NodeAgent.WireGuard;

/// <summary>What a peer's timers say must happen now.</summary>
[Flags]
public enum TimerActions
{
    None = 0,
    /// <summary>The initiation went unanswered for REKEY_TIMEOUT (+ jitter): send it again, or give up after 18 tries.</summary>
    RetransmitHandshake = 1,
    /// <summary>We received data 10 s ago and sent nothing since: tell the peer we are alive.</summary>
    PassiveKeepalive = 2,
    /// <summary>We sent data 15 s ago and heard nothing since: the session may be dead, handshake again.</summary>
    NewHandshake = 4,
    /// <summary>No new session for 3 × REJECT_AFTER_TIME: forget all key material.</summary>
    ZeroKeyMaterial = 8,
    /// <summary>The configured persistent-keepalive interval passed without authenticated traffic.</summary>
    PersistentKeepalive = 16,
}

/// <summary>
/// The state a peer's timers are computed from. wireguard-go arms and cancels five timers on every
/// packet; here the packet path only stamps times, and the timers are evaluated from those stamps
/// (EngineClock ms, 0 = unset), which keeps the packet path free of timer work and makes the rules
/// pure functions of time.
/// </summary>
public readonly record struct TimerState(
    long RetransmitAt,
    long ZeroKeysAt,
    long FirstUnansweredDataReceived,
    long FirstUnansweredDataSent,
    int NewHandshakeJitterMs,
    long LastAuthenticatedSent,
    long LastAuthenticatedReceived,
    int PersistentKeepaliveSeconds);

public static class PeerTimers
{
    public static TimerActions Due(TimerState s, long now, WireGuardTimings timings)
    {
        var due = TimerActions.None;
        if (s.RetransmitAt != 0 && now >= s.RetransmitAt) due |= TimerActions.RetransmitHandshake;
        if (s.FirstUnansweredDataReceived != 0 && now >= s.FirstUnansweredDataReceived + (long)timings.KeepaliveTimeout.TotalMilliseconds)
            due |= TimerActions.PassiveKeepalive;
        if (s.FirstUnansweredDataSent != 0 &&
            now >= s.FirstUnansweredDataSent + (long)(timings.KeepaliveTimeout + timings.RekeyTimeout).TotalMilliseconds + s.NewHandshakeJitterMs)
            due |= TimerActions.NewHandshake;
        if (s.ZeroKeysAt != 0 && now >= s.ZeroKeysAt) due |= TimerActions.ZeroKeyMaterial;
        if (s.PersistentKeepaliveSeconds > 0)
        {
            var lastTraffic = Math.Max(s.LastAuthenticatedSent, s.LastAuthenticatedReceived);
            if (now >= lastTraffic + s.PersistentKeepaliveSeconds * 1000L) due |= TimerActions.PersistentKeepalive;
        }
        return due;
    }

    /// <summary>
    /// When the next of the armed timers falls due (engine ms), or null when none is armed: the
    /// PeerTunnel sleeps until then instead of polling, so an idle peer costs nothing.
    /// </summary>
    public static long? NextDue(TimerState s, WireGuardTimings timings)
    {
        long? next = null;
        void Consider(long at)
        {
            if (next is null || at < next) next = at;
        }
        if (s.RetransmitAt != 0) Consider(s.RetransmitAt);
        if (s.FirstUnansweredDataReceived != 0) Consider(s.FirstUnansweredDataReceived + (long)timings.KeepaliveTimeout.TotalMilliseconds);
        if (s.FirstUnansweredDataSent != 0)
            Consider(s.FirstUnansweredDataSent + (long)(timings.KeepaliveTimeout + timings.RekeyTimeout).TotalMilliseconds + s.NewHandshakeJitterMs);
        if (s.ZeroKeysAt != 0) Consider(s.ZeroKeysAt);
        if (s.PersistentKeepaliveSeconds > 0) Consider(Math.Max(s.LastAuthenticatedSent, s.LastAuthenticatedReceived) + s.PersistentKeepaliveSeconds * 1000L);
        return next;
    }

    /// <summary>0–333 ms of jitter, as wireguard-go adds to the retransmit and new-handshake timers.</summary>
    public static int Jitter(WireGuardTimings timings) => Random.Shared.Next(timings.RekeyTimeoutJitterMaxMs);
}
