using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Tailnets;

public class TailnetDirectoryStateTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);

    private static TailnetDirectoryState Run(TailnetDirectoryState state, object command)
    {
        var decision = state.Process(command);
        Assert.Null(decision.Rejection);
        return decision.Events.Aggregate(state, (s, e) => s.Apply(e));
    }

    private static TailnetDirectoryState WithActive(params (string Id, string Name)[] tailnets) =>
        tailnets.Aggregate(TailnetDirectoryState.Empty, (state, t) =>
        {
            state = Run(state, new RegisterTailnet(t.Id, t.Name, TailnetRules.DefaultSettings(t.Name), Now));
            return Run(state, new FinishRegistration(t.Id, new TailnetInfo(t.Id, TailnetRules.DefaultSettings(t.Name), Now)));
        });

    [Fact]
    public void A_registering_tailnet_reserves_its_name_but_stays_invisible_until_confirmed()
    {
        var state = Run(TailnetDirectoryState.Empty, new RegisterTailnet("tn_a", "acme", TailnetRules.DefaultSettings("acme"), Now));

        Assert.Null(state.FindActive("acme"));
        Assert.Empty(state.List().Tailnets);
        Assert.Equal(ApiErrorCodes.Conflict, state.Process(new RegisterTailnet("tn_b", "acme", TailnetRules.DefaultSettings("acme"), Now)).Rejection?.Code);
        Assert.Single(state.Pending);

        state = Run(state, new FinishRegistration("tn_a", new TailnetInfo("tn_a", TailnetRules.DefaultSettings("acme"), Now)));
        Assert.Equal("tn_a", state.FindActive("acme")?.TailnetId);
        Assert.Equal("acme", state.FindActive("tn_a")?.Name);
        Assert.Empty(state.Pending);
    }

    [Fact]
    public void An_abandoned_registration_frees_its_name_and_leaves_nothing_pending_and_an_active_tailnet_is_not_abandoned()
    {
        var state = Run(WithActive(("tn_live", "live")), new RegisterTailnet("tn_gone", "acme", TailnetRules.DefaultSettings("acme"), Now));
        var refusal = Rejection.Conflict("tailnet tn_gone was deleted and cannot be created again");

        state = Run(state, new AbandonRegistration("tn_gone", refusal));

        Assert.Empty(state.Pending);
        Assert.False(state.Entries.ContainsKey("tn_gone"));
        Assert.Single(state.Process(new RegisterTailnet("tn_new", "acme", TailnetRules.DefaultSettings("acme"), Now)).Events);
        Assert.Empty(state.Process(new AbandonRegistration("tn_live", refusal)).Events);
        Assert.Equal("tn_live", state.FindActive("live")?.TailnetId);
    }

    [Fact]
    public void Names_are_unique_across_the_whole_cluster()
    {
        var state = WithActive(("tn_a", "acme"));

        var decision = state.Process(new RegisterTailnet("tn_b", "acme", TailnetRules.DefaultSettings("acme"), Now));

        Assert.Equal(ApiErrorCodes.Conflict, decision.Rejection?.Code);
        Assert.Contains("acme", decision.Rejection!.Message);
    }

    [Fact]
    public void Registering_with_a_bad_name_is_rejected_before_anything_is_reserved()
    {
        var decision = TailnetDirectoryState.Empty.Process(new RegisterTailnet("tn_a", "Bad Name", TailnetRules.DefaultSettings("x"), Now));

        Assert.Equal(ApiErrorCodes.InvalidRequest, decision.Rejection?.Code);
        Assert.Empty(decision.Events);
    }

    [Fact]
    public void Rename_frees_the_old_name_and_takes_the_new_one()
    {
        var state = Run(WithActive(("tn_a", "acme")), new RenameTailnet("tn_a", "acme-corp"));

        Assert.Null(state.FindActive("acme"));
        Assert.Equal("tn_a", state.FindActive("acme-corp")?.TailnetId);
        Assert.Null(state.Process(new RegisterTailnet("tn_b", "acme", TailnetRules.DefaultSettings("acme"), Now)).Rejection);
    }

    [Fact]
    public void Rename_to_a_taken_name_is_a_conflict_and_to_the_same_name_changes_nothing()
    {
        var state = WithActive(("tn_a", "acme"), ("tn_b", "globex"));

        Assert.Equal(ApiErrorCodes.Conflict, state.Process(new RenameTailnet("tn_a", "globex")).Rejection?.Code);
        var same = state.Process(new RenameTailnet("tn_a", "acme"));
        Assert.Null(same.Rejection);
        Assert.Empty(same.Events);
    }

    [Fact]
    public void Removal_hides_at_once_and_frees_the_name_only_when_complete()
    {
        var removing = Run(WithActive(("tn_a", "acme")), new RemoveTailnet("tn_a", Now));

        Assert.Null(removing.FindActive("tn_a"));
        Assert.Empty(removing.List().Tailnets);
        Assert.Equal(ApiErrorCodes.Conflict, removing.Process(new RegisterTailnet("tn_b", "acme", TailnetRules.DefaultSettings("acme"), Now)).Rejection?.Code);

        var removed = Run(removing, new FinishRemoval("tn_a"));
        Assert.Empty(removed.Entries);
        Assert.Null(removed.Process(new RegisterTailnet("tn_b", "acme", TailnetRules.DefaultSettings("acme"), Now)).Rejection);
    }

    [Fact]
    public void Unknown_ids_and_names_are_not_found()
    {
        var state = WithActive(("tn_a", "acme"));

        Assert.Equal(ApiErrorCodes.NotFound, state.Process(new RemoveTailnet("tn_zzz", Now)).Rejection?.Code);
        Assert.Equal(ApiErrorCodes.NotFound, state.Process(new RenameTailnet("tn_zzz", "x")).Rejection?.Code);
        Assert.Null(state.FindActive("nope"));
    }

    [Fact]
    public void Finishing_twice_changes_nothing()
    {
        var state = WithActive(("tn_a", "acme"));

        Assert.Empty(state.Process(new FinishRegistration("tn_a", new TailnetInfo("tn_a", TailnetRules.DefaultSettings("acme"), Now))).Events);
        Assert.Empty(state.Process(new FinishRemoval("tn_a")).Events);
    }

    [Fact]
    public void The_listing_is_sorted_by_name()
    {
        var state = WithActive(("tn_c", "zeta"), ("tn_a", "alpha"), ("tn_b", "mid"));

        Assert.Equal(["alpha", "mid", "zeta"], state.List().Tailnets.Select(t => t.Name));
    }

    [Fact]
    public void Rebuilding_from_entries_restores_the_name_index()
    {
        var state = WithActive(("tn_a", "acme"), ("tn_b", "globex"));

        var rebuilt = TailnetDirectoryState.From(state.Entries.Values);

        Assert.Equal(state, rebuilt);
        Assert.Equal("tn_b", rebuilt.FindActive("globex")?.TailnetId);
        Assert.Equal(ApiErrorCodes.Conflict, rebuilt.Process(new RegisterTailnet("tn_z", "acme", TailnetRules.DefaultSettings("acme"), Now)).Rejection?.Code);
    }
}
