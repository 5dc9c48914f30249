using Akka.Actor;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Persistence;

/// <summary>The persistent shell's contract, on the in-memory journal: group commit, reply order, recovery.</summary>
public class EventSourcedEntityTests() : Akka.TestKit.Xunit2.TestKit(TestActorSystems.InMemoryPersistence)
{
    private static readonly DateTimeOffset Created = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);

    private IActorRef Spawn(string id, PersistenceSettings? settings = null) =>
        Sys.ActorOf(TailnetActor.PropsFor(id, settings ?? new PersistenceSettings()));

    private TailnetInfo Create(IActorRef tailnet, string id)
    {
        tailnet.Tell(new CreateTailnet(id, TailnetRules.DefaultSettings("acme"), Created));
        return ExpectMsg<TailnetInfo>();
    }

    [Fact]
    public void Commands_sent_together_each_get_their_own_reply_in_order()
    {
        var tailnet = Spawn("tn_burst");
        Create(tailnet, "tn_burst");

        for (var days = 1; days <= 60; days++) tailnet.Tell(new ChangeTailnetSettings("tn_burst", NodeKeyExpiryDays: days));

        for (var days = 1; days <= 60; days++)
            Assert.Equal(days, ExpectMsg<TailnetInfo>().Settings.NodeKeyExpiryDays);
    }

    [Fact]
    public void A_rejected_command_inside_a_batch_leaves_the_others_intact()
    {
        var tailnet = Spawn("tn_mixed");
        Create(tailnet, "tn_mixed");

        tailnet.Tell(new ChangeTailnetSettings("tn_mixed", NodeKeyExpiryDays: 10));
        tailnet.Tell(new ChangeTailnetSettings("tn_mixed", NodeKeyExpiryDays: 999));
        tailnet.Tell(new ChangeTailnetSettings("tn_mixed", DnsSuffix: "ok.example"));

        Assert.Equal(10, ExpectMsg<TailnetInfo>().Settings.NodeKeyExpiryDays);
        Assert.Equal(ApiErrorCodes.InvalidRequest, ExpectMsg<Rejection>().Code);
        Assert.Equal(new TailnetSettings(10, "ok.example"), ExpectMsg<TailnetInfo>().Settings);
    }

    [Fact]
    public void Queries_answer_from_the_committed_state()
    {
        var tailnet = Spawn("tn_query");
        tailnet.Tell(new GetTailnet("tn_query"));
        Assert.Equal(ApiErrorCodes.NotFound, ExpectMsg<Rejection>().Code);

        Create(tailnet, "tn_query");
        tailnet.Tell(new GetTailnet("tn_query"));
        Assert.Equal(Created, ExpectMsg<TailnetInfo>().CreatedAt);
    }

    [Theory]
    [InlineData(0)]   // no snapshots: replay every event
    [InlineData(4)]   // snapshot every 4 events: recover from snapshot plus tail
    public void A_restarted_entity_recovers_exactly_the_state_it_acknowledged(int snapshotEvery)
    {
        var settings = new PersistenceSettings { SnapshotEveryEvents = snapshotEvery };
        var id = "tn_recover" + snapshotEvery;
        var tailnet = Spawn(id, settings);
        Create(tailnet, id);
        TailnetInfo last = null!;
        for (var days = 1; days <= 11; days++)
        {
            tailnet.Tell(new ChangeTailnetSettings(id, NodeKeyExpiryDays: days, DnsSuffix: $"v{days}.example"));
            last = ExpectMsg<TailnetInfo>();
        }

        Watch(tailnet);
        tailnet.Tell(PoisonPill.Instance);
        ExpectTerminated(tailnet);

        var recovered = Spawn(id, settings);
        recovered.Tell(new GetTailnet(id));
        Assert.Equal(last, ExpectMsg<TailnetInfo>());
    }

    [Fact]
    public void With_batching_off_every_command_is_still_answered_in_order()
    {
        var tailnet = Spawn("tn_single", new PersistenceSettings { MaxCommandsPerWrite = 1 });
        Create(tailnet, "tn_single");

        for (var days = 1; days <= 20; days++) tailnet.Tell(new ChangeTailnetSettings("tn_single", NodeKeyExpiryDays: days));

        for (var days = 1; days <= 20; days++)
            Assert.Equal(days, ExpectMsg<TailnetInfo>().Settings.NodeKeyExpiryDays);
    }
}
