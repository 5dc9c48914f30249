using System.Diagnostics;
using Weft.LoadTest.Measurement;

namespace Weft.LoadTest.Tests;

/// <summary>The ledger tells delivered, superseded, duplicated, backwards and lost apart (two sources, three recipients).</summary>
public sealed class DeliveryLedgerTests
{
    private readonly DeliveryLedger _ledger = new(agents: 5);
    private readonly Dictionary<int, int> _recipientA = new();
    private readonly Dictionary<int, int> _recipientB = new();

    private Arrival Apply(Dictionary<int, int> recipient, int sequence, bool fromPatch = true) =>
        _ledger.Applied(recipient, sequence, fromPatch, Stopwatch.GetTimestamp());

    [Fact]
    public void Every_change_delivered_everywhere_settles_with_nothing_outstanding()
    {
        var first = _ledger.Record(sourceAgent: 0, recipients: 2);
        var second = _ledger.Record(sourceAgent: 1, recipients: 2);
        Apply(_recipientA, first);
        Assert.Equal(2, _ledger.Unsettled);
        Apply(_recipientB, first);
        Apply(_recipientA, second);
        Apply(_recipientB, second);

        Assert.Equal(4, _ledger.ExpectedPairs);
        Assert.Equal(4, _ledger.Delivered);
        Assert.Equal(0, _ledger.Outstanding);
        Assert.Equal(0, _ledger.Unsettled);
        Assert.Equal(TimeSpan.Zero, _ledger.OldestUnsettledAge());
        Assert.Equal(4, _ledger.Latencies.TotalCount);
    }

    [Fact]
    public void A_later_change_of_the_same_source_supersedes_the_ones_a_recipient_skipped()
    {
        var changes = Enumerable.Range(0, 4).Select(_ => _ledger.Record(sourceAgent: 2, recipients: 1)).ToList();
        Apply(_recipientA, changes[0]);
        Apply(_recipientA, changes[3]);

        Assert.Equal(2, _ledger.Delivered);
        Assert.Equal(2, _ledger.Superseded);
        Assert.Equal(0, _ledger.Outstanding);
        Assert.Equal(0, _ledger.Unsettled);
    }

    [Fact]
    public void Another_source_changes_supersede_nothing_and_what_never_arrives_is_lost()
    {
        _ledger.Record(sourceAgent: 0, recipients: 1); // never arrives
        var fromOne = _ledger.Record(sourceAgent: 1, recipients: 1);
        Apply(_recipientA, fromOne);

        Assert.Equal(0, _ledger.Superseded);
        Assert.Equal(1, _ledger.Outstanding);
        Assert.Equal(1, _ledger.Unsettled);
        Assert.True(_ledger.OldestUnsettledAge() > TimeSpan.Zero);
        Assert.Null(_ledger.AllSettledAt(0, long.MaxValue));
    }

    [Fact]
    public void A_patch_that_repeats_the_held_change_is_a_duplicate_and_a_full_map_repeating_it_is_not()
    {
        var change = _ledger.Record(sourceAgent: 3, recipients: 1);
        Assert.Equal(Arrival.New, Apply(_recipientA, change));
        Assert.Equal(Arrival.Restated, Apply(_recipientA, change, fromPatch: false));
        Assert.Equal(0, _ledger.Duplicated);
        // The caller hears which application was the duplicate, so it can say what repeated.
        Assert.Equal(Arrival.Duplicate, Apply(_recipientA, change));
        Assert.Equal(1, _ledger.Duplicated);
        Assert.Equal(1, _ledger.Delivered);
    }

    [Fact]
    public void Going_back_to_an_older_change_is_out_of_order_whether_by_patch_or_full_map()
    {
        var older = _ledger.Record(sourceAgent: 4, recipients: 1);
        var newer = _ledger.Record(sourceAgent: 4, recipients: 1);
        Assert.Equal(Arrival.New, Apply(_recipientA, newer));
        Assert.Equal(Arrival.OutOfOrder, Apply(_recipientA, older));
        Assert.Equal(Arrival.OutOfOrder, Apply(_recipientA, older, fromPatch: false));
        Assert.Equal(2, _ledger.OutOfOrder);
        Assert.Equal(1, _ledger.Delivered);
        Assert.Equal(1, _ledger.Superseded);
    }

    [Fact]
    public void Sequences_the_ledger_never_issued_are_ignored()
    {
        Assert.Equal(Arrival.NotFollowed, Apply(_recipientA, 0));
        Assert.Equal(Arrival.NotFollowed, Apply(_recipientA, 12345));
        Assert.Equal(0, _ledger.Delivered + _ledger.Duplicated + _ledger.OutOfOrder);
    }

    [Fact]
    public void Deliveries_count_in_the_phase_their_change_was_made_in()
    {
        var early = _ledger.Record(sourceAgent: 0, recipients: 1);
        var phase = _ledger.BeginPhase();
        var late = _ledger.Record(sourceAgent: 1, recipients: 1);
        Apply(_recipientA, late);
        Apply(_recipientA, early);
        Assert.Equal(1, _ledger.PhaseLatencies[phase - 1].TotalCount);
        Assert.Equal(1, _ledger.PhaseLatencies[phase].TotalCount);
        Assert.Equal(2, _ledger.TakeInterval().TotalCount);
        Assert.Equal(0, _ledger.TakeInterval().TotalCount);
    }
}
