using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;

using static Weft.Cluster.Tests.Tailnets.TailnetDecisions;

namespace Weft.Cluster.Tests.Tailnets;

public class TailnetStateTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private static readonly TailnetSettings Defaults = TailnetRules.DefaultSettings("acme");

    private static TailnetState Active() =>
        TailnetState.Unborn("tn_acme").Apply(new TailnetCreated(Defaults, Now));

    [Fact]
    public void Creating_an_unborn_tailnet_records_its_settings_and_time()
    {
        var decision = TailnetState.Unborn("tn_acme").Process(new CreateTailnet("tn_acme", Defaults, Now));

        var created = Assert.IsType<TailnetCreated>(Assert.Single(decision.Events));
        Assert.Equal(Defaults, created.Settings);
        var state = TailnetState.Unborn("tn_acme").Apply(created);
        Assert.Equal(TailnetLifecycle.Active, state.Lifecycle);
        Assert.Equal(Now, state.CreatedAt);
    }

    [Fact]
    public void Creating_an_existing_tailnet_again_changes_nothing()
    {
        var decision = Active().Process(new CreateTailnet("tn_acme", Defaults with { NodeKeyExpiryDays = 3 }, Now.AddDays(1)));

        Assert.Null(decision.Rejection);
        Assert.Empty(decision.Events);
    }

    [Fact]
    public void A_deleted_tailnet_cannot_be_created_again()
    {
        var deleted = Run(Active(), new DeleteTailnet("tn_acme", Now));

        var decision = deleted.Process(new CreateTailnet("tn_acme", Defaults, Now));

        Assert.Equal(ApiErrorCodes.Conflict, decision.Rejection?.Code);
    }

    [Fact]
    public void Creating_with_invalid_settings_is_rejected()
    {
        var decision = TailnetState.Unborn("tn_x").Process(new CreateTailnet("tn_x", new TailnetSettings(0, "ok.example"), Now));

        Assert.Equal(ApiErrorCodes.InvalidRequest, decision.Rejection?.Code);
        Assert.Contains("nodeKeyExpiryDays", decision.Rejection!.Message);
    }

    [Fact]
    public void Changing_settings_emits_one_event_per_changed_setting()
    {
        var decision = Active().Process(new ChangeTailnetSettings("tn_acme", NodeKeyExpiryDays: 30, DnsSuffix: "corp.example.net"));

        Assert.Equal([new NodeKeyExpiryChanged(30), new DnsSuffixChanged("corp.example.net")], decision.Events.ToArray<ITailnetEvent>());
        var after = decision.Events.Aggregate(Active(), (s, e) => s.Apply(e));
        Assert.Equal(new TailnetSettings(30, "corp.example.net"), after.Settings);
    }

    [Fact]
    public void Setting_a_value_it_already_has_emits_nothing()
    {
        var decision = Active().Process(new ChangeTailnetSettings("tn_acme", NodeKeyExpiryDays: Defaults.NodeKeyExpiryDays));

        Assert.Null(decision.Rejection);
        Assert.Empty(decision.Events);
    }

    [Fact]
    public void A_change_with_no_settings_is_rejected()
    {
        Assert.Equal(ApiErrorCodes.InvalidRequest, Active().Process(new ChangeTailnetSettings("tn_acme")).Rejection?.Code);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(181)]
    [InlineData(-5)]
    public void Node_key_expiry_outside_1_to_180_days_is_rejected(int days)
    {
        var rejection = Active().Process(new ChangeTailnetSettings("tn_acme", NodeKeyExpiryDays: days)).Rejection;

        Assert.Equal(ApiErrorCodes.InvalidRequest, rejection?.Code);
        Assert.Contains(days.ToString(), rejection!.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("UPPER.example")]
    [InlineData("a..b")]
    [InlineData("-lead.example")]
    [InlineData("trail-.example")]
    [InlineData("under_score.example")]
    public void Malformed_dns_suffixes_are_rejected(string suffix)
    {
        Assert.Equal(ApiErrorCodes.InvalidRequest, Active().Process(new ChangeTailnetSettings("tn_acme", DnsSuffix: suffix)).Rejection?.Code);
    }

    [Fact]
    public void A_valid_change_in_one_setting_and_an_invalid_one_in_the_other_is_rejected_whole()
    {
        var decision = Active().Process(new ChangeTailnetSettings("tn_acme", NodeKeyExpiryDays: 10, DnsSuffix: "bad_suffix"));

        Assert.NotNull(decision.Rejection);
        Assert.Empty(decision.Events);
    }

    [Fact]
    public void Changing_an_unborn_or_deleted_tailnet_is_not_found()
    {
        var deleted = Run(Active(), new DeleteTailnet("tn_acme", Now));

        Assert.Equal(ApiErrorCodes.NotFound, TailnetState.Unborn("tn_acme").Process(new ChangeTailnetSettings("tn_acme", 5)).Rejection?.Code);
        Assert.Equal(ApiErrorCodes.NotFound, deleted.Process(new ChangeTailnetSettings("tn_acme", 5)).Rejection?.Code);
    }

    [Fact]
    public void Deleting_is_idempotent()
    {
        var deleted = Run(Active(), new DeleteTailnet("tn_acme", Now));

        Assert.Equal(TailnetLifecycle.Deleted, deleted.Lifecycle);
        var again = deleted.Process(new DeleteTailnet("tn_acme", Now));
        Assert.Null(again.Rejection);
        Assert.Empty(again.Events);
    }

    [Theory]
    [InlineData("acme", true)]
    [InlineData("a", true)]
    [InlineData("acme-corp-2", true)]
    [InlineData("", false)]
    [InlineData("Acme", false)]
    [InlineData("-acme", false)]
    [InlineData("acme-", false)]
    [InlineData("ac me", false)]
    [InlineData("tn_acme", false)]
    public void Tailnet_names_are_dns_labels(string name, bool valid)
    {
        Assert.Equal(valid, TailnetRules.CheckName(name) is null);
    }

    [Fact]
    public void Names_longer_than_63_characters_are_rejected()
    {
        Assert.Null(TailnetRules.CheckName(new string('a', 63)));
        Assert.NotNull(TailnetRules.CheckName(new string('a', 64)));
    }
}
