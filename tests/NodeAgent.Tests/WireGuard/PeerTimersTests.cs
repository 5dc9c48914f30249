using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

/// <summary>The timer rules as pure functions of time: no sleeping.</summary>
public class PeerTimersTests
{
    private static readonly WireGuardTimings T = WireGuardTimings.Default;
    private const long Start = 1_000_000;

    private static TimerState Idle => new(0, 0, 0, 0, 100, Start, Start, 0);

    [Fact]
    public void Nothing_is_due_for_an_idle_peer()
    {
        Assert.Equal(TimerActions.None, PeerTimers.Due(Idle, Start + 10_000_000, T));
    }

    [Fact]
    public void An_unanswered_initiation_is_retransmitted_after_the_rekey_timeout()
    {
        var state = Idle with { RetransmitAt = Start + 5_200 };
        Assert.Equal(TimerActions.None, PeerTimers.Due(state, Start + 5_199, T));
        Assert.Equal(TimerActions.RetransmitHandshake, PeerTimers.Due(state, Start + 5_200, T));
    }

    [Fact]
    public void Received_data_gets_a_keepalive_after_10_seconds_of_silence()
    {
        var state = Idle with { FirstUnansweredDataReceived = Start };
        Assert.Equal(TimerActions.None, PeerTimers.Due(state, Start + 9_999, T));
        Assert.Equal(TimerActions.PassiveKeepalive, PeerTimers.Due(state, Start + 10_000, T));
    }

    [Fact]
    public void Sent_data_without_an_answer_for_15_seconds_plus_jitter_starts_a_new_handshake()
    {
        var state = Idle with { FirstUnansweredDataSent = Start, NewHandshakeJitterMs = 250 };
        Assert.Equal(TimerActions.None, PeerTimers.Due(state, Start + 15_249, T));
        Assert.Equal(TimerActions.NewHandshake, PeerTimers.Due(state, Start + 15_250, T));
    }

    [Fact]
    public void Key_material_is_zeroed_at_its_deadline()
    {
        var state = Idle with { ZeroKeysAt = Start + 540_000 };
        Assert.Equal(TimerActions.ZeroKeyMaterial, PeerTimers.Due(state, Start + 540_000, T));
        Assert.Equal(TimeSpan.FromSeconds(540), T.ZeroKeyMaterialAfter);
    }

    [Fact]
    public void Persistent_keepalive_fires_after_the_interval_without_traffic_either_way()
    {
        var state = Idle with { PersistentKeepaliveSeconds = 25, LastAuthenticatedSent = Start, LastAuthenticatedReceived = Start + 10_000 };
        Assert.Equal(TimerActions.None, PeerTimers.Due(state, Start + 34_999, T));
        Assert.Equal(TimerActions.PersistentKeepalive, PeerTimers.Due(state, Start + 35_000, T));
    }

    [Fact]
    public void Jitter_stays_below_a_third_of_a_second()
    {
        for (var i = 0; i < 1000; i++) Assert.InRange(PeerTimers.Jitter(T), 0, 333);
    }

    [Fact]
    public void The_last_minute_rekey_age_is_165_seconds()
    {
        Assert.Equal(TimeSpan.FromSeconds(165), T.LastMinuteHandshakeAge);
    }
}
