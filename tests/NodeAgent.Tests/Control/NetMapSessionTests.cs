using Weft.Contracts.Control;
using Weft.NodeAgent.Control;

namespace Weft.NodeAgent.Tests.Control;

/// <summary>One stream's netmap: fresh starts, gaps that ask for a full map, and a quiet stream verified, then given up on.</summary>
public class NetMapSessionTests
{
    /// <summary>A reading of the monotonic clock (the session never sees wall time).</summary>
    private static readonly TimeSpan T0 = TimeSpan.FromHours(30);
    private static readonly TimeSpan VerifyAfter = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(30);

    private static NetMapSession NewSession() => new(VerifyAfter, AnswerTimeout);

    private static NetMap Map(ulong version, params string[] peers) =>
        new() { Version = version, Self = new Node { Id = "self", Status = "active" }, Peers = { peers.Select(p => new Node { Id = p, Name = p }) } };

    private static NetMapDelta Delta(ulong from, ulong to, string added) => new() { BaseVersion = from, Version = to, PeersAdded = { new Node { Id = added, Name = added } } };

    [Fact]
    public void A_first_stream_asks_for_a_full_map_and_a_later_one_resumes_from_the_version_held()
    {
        var session = NewSession();
        Assert.Equal(0ul, session.BeginStream(T0));
        Assert.Equal(NetMapApplied.Replaced, session.OnNetMap(Map(5, "a"), T0).Applied);
        Assert.Equal(NetMapApplied.Patched, session.OnDelta(Delta(5, 6, "b"), T0).Applied);

        Assert.Equal(6ul, session.BeginStream(T0 + TimeSpan.FromMinutes(1)));
        Assert.False(session.AwaitingFullMap);
    }

    [Fact]
    public void A_delta_that_does_not_continue_the_version_asks_for_a_full_map_and_deltas_until_it_are_ignored()
    {
        var session = NewSession();
        session.BeginStream(T0);
        session.OnNetMap(Map(5, "a"), T0);

        var gap = session.OnDelta(Delta(7, 8, "c"), T0);

        Assert.Equal(NetMapApplied.Gap, gap.Applied);
        Assert.Equal(0ul, gap.SubscribeFrom);
        Assert.Equal(MapStep.None, session.OnDelta(Delta(5, 6, "b"), T0)); // too late: the full map is on its way
        Assert.Equal(NetMapApplied.Replaced, session.OnNetMap(Map(9, "a", "b", "c"), T0).Applied);
        Assert.Equal(["a", "b", "c"], session.Store.View.Peers.Keys);
    }

    [Fact]
    public void A_quiet_stream_is_verified_and_an_up_to_date_answer_settles_it()
    {
        var session = NewSession();
        session.BeginStream(T0);
        session.OnNetMap(Map(5, "a"), T0);

        Assert.Equal(MapStep.None, session.Check(T0 + TimeSpan.FromSeconds(59)));
        Assert.Equal(5ul, session.Check(T0 + TimeSpan.FromSeconds(61)).SubscribeFrom);
        Assert.Equal(MapStep.None, session.Check(T0 + TimeSpan.FromSeconds(62))); // asked once, waiting
        Assert.Equal(MapStep.None, session.OnUpToDate(5, T0 + TimeSpan.FromSeconds(62)));
        Assert.Equal(MapStep.None, session.Check(T0 + TimeSpan.FromSeconds(100)));
        Assert.Equal(5ul, session.Check(T0 + TimeSpan.FromSeconds(123)).SubscribeFrom); // quiet again: verified again
    }

    [Fact]
    public void An_unanswered_verification_marks_the_stream_stale()
    {
        var session = NewSession();
        session.BeginStream(T0);
        session.OnNetMap(Map(5, "a"), T0);
        session.Check(T0 + TimeSpan.FromSeconds(61));

        Assert.False(session.Check(T0 + TimeSpan.FromSeconds(90)).Stale);
        Assert.True(session.Check(T0 + TimeSpan.FromSeconds(92)).Stale);
    }

    [Fact]
    public void A_subscription_that_never_gets_its_map_marks_the_stream_stale()
    {
        var session = NewSession();
        session.BeginStream(T0);

        Assert.True(session.Check(T0 + AnswerTimeout + TimeSpan.FromSeconds(1)).Stale);
    }

    [Fact]
    public void A_confirmation_of_another_version_means_the_map_diverged_and_asks_for_a_full_one()
    {
        var session = NewSession();
        session.BeginStream(T0);
        session.OnNetMap(Map(5, "a"), T0);

        Assert.Equal(0ul, session.OnUpToDate(7, T0).SubscribeFrom);
        Assert.True(session.AwaitingFullMap);
    }

    [Fact]
    public void Deltas_replayed_after_a_resume_are_ignored_but_count_as_an_answer()
    {
        var session = NewSession();
        session.BeginStream(T0);
        session.OnNetMap(Map(5, "a"), T0);
        session.OnDelta(Delta(5, 6, "b"), T0);
        session.Check(T0 + TimeSpan.FromSeconds(61));

        Assert.Equal(NetMapApplied.Stale, session.OnDelta(Delta(5, 6, "b"), T0 + TimeSpan.FromSeconds(62)).Applied);
        Assert.False(session.Check(T0 + TimeSpan.FromSeconds(100)).Stale);
    }

    [Fact]
    public void A_cached_map_is_replaced_by_any_live_full_map_whatever_its_version()
    {
        var session = NewSession();
        Assert.True(session.LoadCached(Map(900, "old")));
        Assert.Equal(900ul, session.BeginStream(T0));

        session.OnNetMap(Map(3, "new"), T0); // the device's entity restarted: a lower epoch, and the truth

        Assert.Equal(3ul, session.Store.Version);
        Assert.Equal(["new"], session.Store.View.Peers.Keys);
        Assert.False(session.MapIsCached);
    }
}
