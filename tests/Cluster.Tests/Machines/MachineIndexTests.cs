using Akka.Actor;
using Akka.Persistence;
using Weft.Cluster.Machines;
using Weft.Cluster.Persistence;
using PersistenceSettings = Weft.Cluster.Persistence.PersistenceSettings;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Machines;

/// <summary>
/// The machine index entity recovers on every registration, so it skips the snapshot store: what it
/// answers after a stop comes from its journal alone, and it never writes a snapshot.
/// </summary>
public class MachineIndexTests() : Akka.TestKit.Xunit2.TestKit(TestActorSystems.InMemoryPersistence)
{
    // Snapshots after every event, were the entity to keep them.
    private static readonly PersistenceSettings SnapshotEveryEvent = new() { SnapshotEveryEvents = 1 };

    private IActorRef Start(string machineKey) => Sys.ActorOf(MachineIndexActor.PropsFor(machineKey, SnapshotEveryEvent));

    private void Stop(IActorRef entity)
    {
        Watch(entity);
        entity.Tell(StopEntity.Instance);
        ExpectTerminated(entity);
    }

    private IActorRef SnapshotStore => Akka.Persistence.Persistence.Instance.Apply(Sys).SnapshotStoreFor(null);

    [Fact]
    public void A_stopped_entity_answers_its_latest_binding_from_the_journal_and_stores_no_snapshot()
    {
        const string key = "aa01";
        var entity = Start(key);
        entity.Tell(new LookupMachine(key));
        Assert.IsType<Rejection>(ExpectMsg<object>());
        entity.Tell(new BindMachine(key, "tn_a", "dev_a"));
        ExpectMsg<MachineBinding>();
        entity.Tell(new UnbindMachine(key, "dev_a"));
        ExpectMsg<object>();
        entity.Tell(new BindMachine(key, "tn_b", "dev_b"));
        Assert.Equal(new MachineBinding(key, "tn_b", "dev_b"), ExpectMsg<MachineBinding>());
        Stop(entity);

        var recovered = Start(key);
        recovered.Tell(new LookupMachine(key));
        Assert.Equal(new MachineBinding(key, "tn_b", "dev_b"), ExpectMsg<MachineBinding>());

        SnapshotStore.Tell(new LoadSnapshot("machine-" + key, SnapshotSelectionCriteria.Latest, long.MaxValue));
        Assert.Null(ExpectMsg<LoadSnapshotResult>().Snapshot);
    }

    [Fact]
    public void A_snapshot_left_by_an_older_version_is_not_read_the_journal_decides()
    {
        const string key = "aa02";
        var entity = Start(key);
        entity.Tell(new BindMachine(key, "tn_a", "dev_a"));
        ExpectMsg<MachineBinding>();
        Stop(entity);
        // An older version of Weft snapshotted this entity with a state the journal has since moved past.
        SnapshotStore.Tell(new SaveSnapshot(new SnapshotMetadata("machine-" + key, 1, DateTime.UtcNow), new MachineIndexState(key, "tn_old", "dev_old")));
        ExpectMsg<SaveSnapshotSuccess>();

        var recovered = Start(key);
        recovered.Tell(new LookupMachine(key));
        Assert.Equal(new MachineBinding(key, "tn_a", "dev_a"), ExpectMsg<MachineBinding>());
    }
}
