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
    /// <summary>After data came in with nothing sent back, a passive keepalive is due this long after it.</summary>
    public static long PassiveKeepaliveAfterMs(WireGuardTimings timings) => (long)timings.KeepaliveTimeout.TotalMilliseconds;

    /// <summary>After data went out with nothing heard back, a new handshake is due this long after it (plus jitter).</summary>
    public static long NewHandshakeAfterMs(WireGuardTimings timings) => (long)(timings.KeepaliveTimeout + timings.RekeyTimeout).TotalMilliseconds;

    /// <summary>Each armed timer and when it falls due (engine ms): one rule for what is due now and when to wake next.</summary>
    private static IEnumerable<(TimerActions Action, long At)> Deadlines(TimerState s, WireGuardTimings timings)
    {
        if (s.RetransmitAt != 0) yield return (TimerActions.RetransmitHandshake, s.RetransmitAt);
        if (s.FirstUnansweredDataReceived != 0) yield return (TimerActions.PassiveKeepalive, s.FirstUnansweredDataReceived + PassiveKeepaliveAfterMs(timings));
        if (s.FirstUnansweredDataSent != 0) yield return (TimerActions.NewHandshake, s.FirstUnansweredDataSent + NewHandshakeAfterMs(timings) + s.NewHandshakeJitterMs);
        if (s.ZeroKeysAt != 0) yield return (TimerActions.ZeroKeyMaterial, s.ZeroKeysAt);
        if (s.PersistentKeepaliveSeconds > 0)
            yield return (TimerActions.PersistentKeepalive, Math.Max(s.LastAuthenticatedSent, s.LastAuthenticatedReceived) + s.PersistentKeepaliveSeconds * 1000L);
    }

    public static TimerActions Due(TimerState s, long now, WireGuardTimings timings)
    {
        var due = TimerActions.None;
        foreach (var (action, at) in Deadlines(s, timings))
            if (now >= at) due |= action;
        return due;
    }

    /// <summary>
    /// When the next of the armed timers falls due (engine ms), or null when none is armed: the
    /// PeerTunnel sleeps until then instead of polling, so an idle peer costs nothing.
    /// </summary>
    public static long? NextDue(TimerState s, WireGuardTimings timings)
    {
        long? next = null;
        foreach (var (_, at) in Deadlines(s, timings))
            if (next is null || at < next) next = at;
        return next;
    }

    /// <summary>0–333 ms of jitter, as wireguard-go adds to the retransmit and new-handshake timers.</summary>
    public static int Jitter(WireGuardTimings timings) => Random.Shared.Next(timings.RekeyTimeoutJitterMaxMs);
}
