using Akka.Actor;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>The tailnet entity's own chores when its journal refuses a write: what it meant to do is done at a later pass.</summary>
public class TailnetHousekeepingTests() : Akka.TestKit.Xunit2.TestKit(RejectingJournal.Configuration.WithFallback(TestActorSystems.InMemoryPersistence))
{
    private static readonly DateTimeOffset Created = DateTimeOffset.UtcNow;

    [Fact]
    public void An_ephemeral_devices_removal_the_journal_rejected_is_submitted_again_at_a_later_pass()
    {
        // The entry was dropped as the removal was submitted: once the journal rejected the write, nothing put it back
        // until the device came and went again or the tailnet recovered (weeks, on a stable cluster), and the offline
        // ephemeral device kept its address and name, shown to its peers.
        const string id = "tn_eph_rejected";
        var tailnet = Sys.ActorOf(TailnetActor.PropsFor(id, new PersistenceSettings(), TimeProvider.System,
            new Weft.Cluster.Control.ControlSettings { HousekeepingSeconds = 0.1 }));
        tailnet.Tell(new CreateTailnet(id, TailnetRules.DefaultSettings("acme") with { EphemeralTimeoutSeconds = 1 }, Created));
        ExpectMsg<TailnetInfo>();
        tailnet.Tell(new CreateAuthKey(id, "eph", "h", null, true, true, [], Created.AddDays(1), "", Created));
        ExpectMsg<AuthKeyInfo>();
        tailnet.Tell(new RegisterDevice(id, "dev_e", new string('e', 64), new string('g', 64), "", "dev_e", "linux", "eph", "h", Created));
        ExpectMsg<DeviceRegistration>();

        // Offline from its registration on; the journal refuses every write while the timeout runs out and a pass or more after.
        RejectingJournal.Reject(TailnetActor.PersistenceIdOf(id));
        ExpectNoMsg(TimeSpan.FromSeconds(2));
        tailnet.Tell(new GetDevice(id, "dev_e"));
        Assert.Equal("dev_e", ExpectMsg<DeviceInfo>().Device.DeviceId);

        RejectingJournal.Accept(TailnetActor.PersistenceIdOf(id));
        AwaitAssert(() =>
        {
            tailnet.Tell(new GetDevice(id, "dev_e"));
            Assert.IsType<Rejection>(ExpectMsg<object>());
        }, TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(200));
    }
}
