using Akka.Actor;
using Weft.Cluster.Audit;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Audit;

/// <summary>
/// One audit log entity. The admin API sends an entry again when the first attempt's answer does not come
/// (the log's shard moving after a node was lost): the entry is stored once, and an incarnation that
/// recovers it still holds it once.
/// </summary>
public class AuditLogActorTests() : Akka.TestKit.Xunit2.TestKit(TestActorSystems.InMemoryPersistence)
{
    private static readonly DateTimeOffset At = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void An_entry_sent_again_is_stored_once_and_a_different_one_at_the_same_moment_is_stored_too()
    {
        var entry = new AuditEntry(At.AddTicks(1234), "operator-key key_a", "POST /api/v1/tailnets", "", 201, "127.0.0.1");
        var log = Sys.ActorOf(AuditLogActor.PropsFor("tn_retried", new PersistenceSettings()), "log");

        log.Tell(new RecordAudit("tn_retried", entry));
        Assert.Equal(1, ExpectMsg<AuditAppended>().Total);
        log.Tell(new RecordAudit("tn_retried", entry)); // the retry of an attempt whose answer was lost
        Assert.Equal(1, ExpectMsg<AuditAppended>().Total);
        log.Tell(new RecordAudit("tn_retried", entry with { Target = "tailnet=tn_other" }));
        Assert.Equal(2, ExpectMsg<AuditAppended>().Total);

        Watch(log);
        Sys.Stop(log);
        ExpectTerminated(log);
        var recovered = Sys.ActorOf(AuditLogActor.PropsFor("tn_retried", new PersistenceSettings()), "log-recovered");
        recovered.Tell(new RecordAudit("tn_retried", entry)); // a retry that reaches the log's next incarnation
        Assert.Equal(2, ExpectMsg<AuditAppended>().Total);
        recovered.Tell(new GetAuditLog("tn_retried", DateTimeOffset.MinValue, 100));
        var page = ExpectMsg<AuditPage>();
        Assert.Equal([entry, entry with { Target = "tailnet=tn_other" }], page.Entries);
    }
}
