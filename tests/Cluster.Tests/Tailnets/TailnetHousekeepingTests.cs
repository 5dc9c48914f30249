using Akka.Actor;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>
/// The tailnet entity's own chores: when its journal refuses a write, what it meant to do is done at a
/// later pass; when it starts again, what fell due while no incarnation ran is done at once.
/// </summary>
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

    [Fact]
    public void Keys_that_lapsed_while_the_tailnet_was_not_running_expire_as_soon_as_it_starts_again()
    {
        // The sweep runs once a housekeeping interval (an hour here): before, a key that lapsed while the entity was
        // down stayed active that long after it started, and a rotation in that window escaped the expiry.
        const string id = "tn_lapsed";
        var clock = new SteppedWallClock();
        var control = new Weft.Cluster.Control.ControlSettings { HousekeepingSeconds = 3600 };
        var tailnet = Sys.ActorOf(TailnetActor.PropsFor(id, new PersistenceSettings(), clock, control));
        tailnet.Tell(new CreateTailnet(id, TailnetRules.DefaultSettings("acme") with { NodeKeyExpiryDays = 1 }, clock.GetUtcNow()));
        ExpectMsg<TailnetInfo>();
        tailnet.Tell(new CreateAuthKey(id, "k", "h", null, true, false, [], clock.GetUtcNow().AddDays(30), "", clock.GetUtcNow()));
        ExpectMsg<AuthKeyInfo>();
        tailnet.Tell(new RegisterDevice(id, "dev_l", new string('l', 64), new string('n', 64), "", "dev_l", "linux", "k", "h", clock.GetUtcNow()));
        ExpectMsg<DeviceRegistration>();
        Watch(tailnet);
        tailnet.Tell(PoisonPill.Instance);
        ExpectTerminated(tailnet);

        clock.Step(TimeSpan.FromDays(2)); // the cluster was down past the key's expiry
        var again = Sys.ActorOf(TailnetActor.PropsFor(id, new PersistenceSettings(), clock, control));

        AwaitAssert(() =>
        {
            again.Tell(new GetDevice(id, "dev_l"));
            Assert.Equal(DeviceStatus.Expired, ExpectMsg<DeviceInfo>().Device.Status);
        }, TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void An_ephemeral_device_offline_when_the_tailnet_stopped_counts_from_its_last_sighting_not_from_the_restart()
    {
        // Counting every offline ephemeral device from each start, a tailnet started again more often than the
        // timeout (daily deploys and a week's timeout) never removed one.
        const string id = "tn_eph_restart";
        var clock = new SteppedWallClock();
        var control = new Weft.Cluster.Control.ControlSettings { HousekeepingSeconds = 0.1, PresenceTimeoutSeconds = 1, SessionReattachSeconds = 0.5 };
        var tailnet = Sys.ActorOf(TailnetActor.PropsFor(id, new PersistenceSettings(), clock, control));
        tailnet.Tell(new CreateTailnet(id, TailnetRules.DefaultSettings("acme") with { EphemeralTimeoutSeconds = 600 }, clock.GetUtcNow()));
        ExpectMsg<TailnetInfo>();
        tailnet.Tell(new CreateAuthKey(id, "eph", "h", null, true, true, [], clock.GetUtcNow().AddDays(1), "", clock.GetUtcNow()));
        ExpectMsg<AuthKeyInfo>();
        tailnet.Tell(new RegisterDevice(id, "dev_gone", new string('e', 64), new string('g', 64), "", "dev_gone", "linux", "eph", "h", clock.GetUtcNow()));
        ExpectMsg<DeviceRegistration>();
        tailnet.Tell(new DeviceOnline(id, "dev_gone", true, clock.GetUtcNow()));
        tailnet.Tell(new DeviceOnline(id, "dev_gone", false, clock.GetUtcNow())); // its last sighting, stored
        AwaitAssert(() =>
        {
            tailnet.Tell(new GetDevice(id, "dev_gone"));
            Assert.NotNull(ExpectMsg<DeviceInfo>().Device.LastSeen);
        }, TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(100));
        Watch(tailnet);
        tailnet.Tell(PoisonPill.Instance);
        ExpectTerminated(tailnet);

        clock.Step(TimeSpan.FromMinutes(11)); // past the timeout since it went
        var again = Sys.ActorOf(TailnetActor.PropsFor(id, new PersistenceSettings(), clock, control));

        AwaitAssert(() =>
        {
            again.Tell(new GetDevice(id, "dev_gone"));
            Assert.IsType<Rejection>(ExpectMsg<object>());
        }, TimeSpan.FromSeconds(15), TimeSpan.FromMilliseconds(200));
    }
}
