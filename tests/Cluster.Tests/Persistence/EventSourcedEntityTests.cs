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

    /// <summary>
    /// A tailnet's first write, which may be the first of the test run (the journal and the entity start, and much is
    /// compiled, while other test classes start beside it on two cores): more than the test kit's default 3 s.
    /// </summary>
    private static readonly TimeSpan FirstWrite = TimeSpan.FromSeconds(15);

    private TailnetInfo Create(IActorRef tailnet, string id)
    {
        tailnet.Tell(new CreateTailnet(id, TailnetRules.DefaultSettings("acme"), Created));
        return ExpectMsg<TailnetInfo>(FirstWrite);
    }

    /// <summary>Creates the tailnet with a reusable auth key and registers the devices (each id's last letter makes its keys).</summary>
    private void CreateWithDevices(IActorRef tailnet, string id, params string[] devices)
    {
        Create(tailnet, id);
        tailnet.Tell(new CreateAuthKey(id, "k", "h", null, true, false, [], Created.AddDays(1), "", Created));
        ExpectMsg<AuthKeyInfo>();
        foreach (var device in devices)
        {
            var c = device[^1];
            tailnet.Tell(new RegisterDevice(id, device, new string(c, 64), new string((char)(c + 2), 64), "", device, "linux", "k", "h", Created));
            ExpectMsg<DeviceRegistration>();
        }
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

    [Fact]
    public void Soft_state_changed_while_a_write_is_in_flight_survives_the_write_and_is_not_journaled()
    {
        var tailnet = Spawn("tn_soft");
        Create(tailnet, "tn_soft");
        tailnet.Tell(new CreateAuthKey("tn_soft", "k", "h", null, true, false, [], Created.AddDays(1), "", Created));
        ExpectMsg<AuthKeyInfo>();
        tailnet.Tell(new RegisterDevice("tn_soft", "dev_a", new string('a', 64), new string('b', 64), "", "a", "linux", "k", "h", Created));
        ExpectMsg<DeviceRegistration>();

        // The rename's write is in flight when the endpoints arrive (both wait in the mailbox together):
        // the endpoints are answered at once, without waiting for a write.
        tailnet.Tell(new RenameDevice("tn_soft", "dev_a", "renamed"));
        tailnet.Tell(new UpdateDeviceEndpoints("tn_soft", "dev_a", ["198.18.3.4:41641"], 7, new string('c', 64)));
        var endpointsAck = ExpectMsg<DeviceInfo>().Device;
        Assert.Equal(("a", 7), (endpointsAck.Name, endpointsAck.HomeRelay));
        var renameAck = ExpectMsg<DeviceInfo>().Device;
        Assert.Equal(("renamed", 7), (renameAck.Name, renameAck.HomeRelay));
        tailnet.Tell(new GetDevice("tn_soft", "dev_a"));
        var both = ExpectMsg<DeviceInfo>().Device;
        Assert.Equal(("renamed", 7), (both.Name, both.HomeRelay));
        Assert.Equal<string>(["198.18.3.4:41641"], both.Endpoints);

        // A bad report is refused like a command; then a restart knows only what was journaled.
        tailnet.Tell(new UpdateDeviceEndpoints("tn_soft", "dev_a", ["not-an-endpoint"], 0, ""));
        Assert.Equal(ApiErrorCodes.InvalidRequest, ExpectMsg<Rejection>().Code);
        Watch(tailnet);
        tailnet.Tell(PoisonPill.Instance);
        ExpectTerminated(tailnet);
        var restarted = Spawn("tn_soft");
        restarted.Tell(new GetDevice("tn_soft", "dev_a"));
        var recovered = ExpectMsg<DeviceInfo>().Device;
        Assert.Equal("renamed", recovered.Name);
        Assert.Empty(recovered.Endpoints);
    }

    /// <summary>A tailnet with devices a and b, and the probe that stands in for the device region.</summary>
    private (Akka.TestKit.TestProbe Devices, IActorRef Tailnet) WithDevicesAAndB(string id)
    {
        var devices = CreateTestProbe();
        Akka.Hosting.ActorRegistry.For(Sys).Register<Weft.Cluster.Devices.DeviceActor>(devices.Ref);
        var tailnet = Spawn(id);
        CreateWithDevices(tailnet, id, "dev_a", "dev_b");
        return (devices, tailnet);
    }

    /// <summary>
    /// A tailnet with devices a and b, where b has reported endpoints, stopped and started again; with
    /// the probe that stands in for the device region (the old incarnation's fan-outs already drained).
    /// </summary>
    private (Akka.TestKit.TestProbe Devices, IActorRef Restarted) RestartedAfterBReported(string id)
    {
        var (devices, tailnet) = WithDevicesAAndB(id);
        tailnet.Tell(new UpdateDeviceEndpoints(id, "dev_b", ["198.18.3.2:1"], 0, ""));
        ExpectMsg<DeviceInfo>();
        Watch(tailnet);
        tailnet.Tell(PoisonPill.Instance);
        ExpectTerminated(tailnet);
        devices.ReceiveWhile(TimeSpan.FromMilliseconds(300), m => m);
        return (devices, Spawn(id));
    }

    [Fact]
    public void A_restarted_tailnet_marks_endpoints_unknown_until_reported_then_restates_the_node_and_patches_later_changes()
    {
        var (devices, restarted) = RestartedAfterBReported("tn_relearn");
        // Every device is told to resync; until each answers, full maps wait.
        var resyncs = devices.ReceiveN(2, TimeSpan.FromSeconds(5)).Cast<Weft.Cluster.Devices.PeerChanges>().ToList();
        Assert.All(resyncs, r => Assert.True(r.Resync));
        restarted.Tell(new SendNetMap("tn_relearn", "dev_a"));
        devices.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        restarted.Tell(new DeviceReportedAgain("tn_relearn", "dev_a"));
        restarted.Tell(new DeviceReportedAgain("tn_relearn", "dev_b"));
        var map = Weft.Contracts.Control.NetMap.Parser.ParseFrom(devices.ExpectMsg<NetMapSnapshot>().NetMap);
        Assert.True(map.Peers.Single().EndpointsUnknown);
        Assert.Empty(map.Peers.Single().Endpoints);

        // b reports the same endpoints as before: a gets b's whole node again, now known.
        restarted.Tell(new UpdateDeviceEndpoints("tn_relearn", "dev_b", ["198.18.3.2:1"], 0, ""));
        ExpectMsg<DeviceInfo>();
        var restated = Weft.Contracts.Control.NetMapDelta.Parser.ParseFrom(devices.FishForMessage<Weft.Cluster.Devices.PeerChanges>(m => m.DeviceId == "dev_a").Delta);
        Assert.True(restated.PeersChanged.Single().Endpoints.SequenceEqual(["198.18.3.2:1"]), restated.ToString());
        Assert.False(restated.PeersChanged.Single().EndpointsUnknown);

        // A later change is a patch again.
        restarted.Tell(new UpdateDeviceEndpoints("tn_relearn", "dev_b", ["198.18.3.2:2"], 0, ""));
        ExpectMsg<DeviceInfo>();
        var patched = Weft.Contracts.Control.NetMapDelta.Parser.ParseFrom(devices.FishForMessage<Weft.Cluster.Devices.PeerChanges>(m => m.DeviceId == "dev_a").Delta);
        Assert.Equal(["198.18.3.2:2"], patched.Patches.Single().Endpoints.Endpoints);
    }

    [Fact]
    public void A_wall_clock_stepped_forward_times_out_no_device_heard_from_just_now_and_deletes_no_connected_ephemeral_device()
    {
        const string id = "tn_clock_step";
        // Its wall clock moves by hand; its monotonic clock (GetTimestamp) is the machine's.
        var clock = new ManualClock(Created);
        var devices = CreateTestProbe();
        Akka.Hosting.ActorRegistry.For(Sys).Register<Weft.Cluster.Devices.DeviceActor>(devices.Ref);
        var tailnet = Sys.ActorOf(TailnetActor.PropsFor(id, new PersistenceSettings(), clock, new Weft.Cluster.Control.ControlSettings { HousekeepingSeconds = 0.1 }));
        Create(tailnet, id);
        tailnet.Tell(new CreateAuthKey(id, "eph", "h", null, true, true, [], Created.AddDays(1), "", Created));
        ExpectMsg<AuthKeyInfo>();
        tailnet.Tell(new RegisterDevice(id, "dev_e", new string('e', 64), new string('g', 64), "", "dev_e", "linux", "eph", "h", Created));
        ExpectMsg<DeviceRegistration>();
        tailnet.Tell(new DeviceOnline(id, "dev_e", true, Created));
        DeviceInfo Device()
        {
            tailnet.Tell(new GetDevice(id, "dev_e"));
            return ExpectMsg<DeviceInfo>();
        }
        Assert.True(Device().Online);

        // The machine resumes from a pause, or NTP steps its clock: ten minutes later by the wall clock (the
        // presence timeout is 60 s, the ephemeral timeout 5 min), a moment later by any other measure.
        clock.Advance(TimeSpan.FromMinutes(10));
        ExpectNoMsg(TimeSpan.FromSeconds(1)); // ten housekeeping passes
        var device = Device();
        Assert.Equal("dev_e", device.Device.DeviceId);
        Assert.True(device.Online, "the device heard from a second ago was timed out");
    }

    /// <summary>A clock the test moves by hand: its wall clock, and its monotonic one by as much if <paramref name="monotonicToo"/>.</summary>
    private sealed class ManualClock(DateTimeOffset start, bool monotonicToo = false) : TimeProvider
    {
        private DateTimeOffset _now = start;
        private long _advancedTicks;

        public override DateTimeOffset GetUtcNow() => _now;

        public override long GetTimestamp() => base.GetTimestamp() + Interlocked.Read(ref _advancedTicks) * TimestampFrequency / TimeSpan.TicksPerSecond;

        public void Advance(TimeSpan by)
        {
            _now += by;
            if (monotonicToo) Interlocked.Add(ref _advancedTicks, by.Ticks);
        }
    }

    [Fact]
    public void A_full_map_request_repeated_while_its_answer_is_on_the_way_is_answered_once_and_a_forced_repeat_only_if_sent_when_the_answer_should_have_arrived()
    {
        const string id = "tn_repeats";
        const ulong need = (1UL << 32) | 1;
        var clock = new ManualClock(Created);
        var devices = CreateTestProbe();
        Akka.Hosting.ActorRegistry.For(Sys).Register<Weft.Cluster.Devices.DeviceActor>(devices.Ref);
        var tailnet = Sys.ActorOf(TailnetActor.PropsFor(id, new PersistenceSettings(), clock));
        CreateWithDevices(tailnet, id, "dev_a", "dev_b");
        devices.ReceiveWhile(TimeSpan.FromMilliseconds(300), m => m);
        int MapsToA() => devices.ReceiveWhile(TimeSpan.FromMilliseconds(500), m => m).OfType<NetMapSnapshot>().Count(m => m.DeviceId == "dev_a");
        var retry = Weft.Cluster.Devices.DeviceActor.DefaultSnapshotRetry;

        // A busy tailnet finds a request and its repeats in its mailbox together: one map. A forced repeat
        // sent before the answer could have arrived says nothing, however late it is read.
        tailnet.Tell(new SendNetMap(id, "dev_a", need));
        tailnet.Tell(new SendNetMap(id, "dev_a", need));
        Assert.Equal(1, MapsToA());
        clock.Advance(retry * 5);
        tailnet.Tell(new SendNetMap(id, "dev_a", need, ForcedAt: Created + retry / 2));
        tailnet.Tell(new SendNetMap(id, "dev_a", need));
        Assert.Equal(0, MapsToA());

        // A forced repeat sent once the answer had had the time to arrive says it did not (a link between
        // nodes dropped it): the need is answered again.
        tailnet.Tell(new SendNetMap(id, "dev_a", need, ForcedAt: Created + retry));
        Assert.Equal(1, MapsToA());

        // A new need is answered at once, and so is every request that names none (from a node of an older version).
        tailnet.Tell(new SendNetMap(id, "dev_a", need + 1));
        Assert.Equal(1, MapsToA());
        tailnet.Tell(new SendNetMap(id, "dev_a"));
        tailnet.Tell(new SendNetMap(id, "dev_a"));
        Assert.Equal(2, MapsToA());

        // What was answered is not stored: an incarnation that starts over answers the same need again
        // (once its devices have reported again, as any full map waits for).
        Watch(tailnet);
        tailnet.Tell(PoisonPill.Instance);
        ExpectTerminated(tailnet);
        var restarted = Sys.ActorOf(TailnetActor.PropsFor(id, new PersistenceSettings(), clock));
        Assert.All(devices.ReceiveN(2, TimeSpan.FromSeconds(5)).Cast<Weft.Cluster.Devices.PeerChanges>(), r => Assert.True(r.Resync));
        restarted.Tell(new SendNetMap(id, "dev_a", need + 1));
        restarted.Tell(new SendNetMap(id, "dev_a", need + 1));
        restarted.Tell(new DeviceReportedAgain(id, "dev_a"));
        restarted.Tell(new DeviceReportedAgain(id, "dev_b"));
        Assert.Equal(1, MapsToA());
    }

    [Fact]
    public void A_device_whose_resync_was_lost_is_asked_for_its_endpoints_again_by_its_next_heartbeat_until_they_are_known()
    {
        var (devices, restarted) = RestartedAfterBReported("tn_lost_resync");
        Assert.All(devices.ReceiveN(2, TimeSpan.FromSeconds(5)).Cast<Weft.Cluster.Devices.PeerChanges>(), r => Assert.True(r.Resync));
        // a answers its resync; b's is lost on the way, so b's entity never reports again.
        restarted.Tell(new DeviceReportedAgain("tn_lost_resync", "dev_a"));
        restarted.Tell(new SendNetMap("tn_lost_resync", "dev_a")); // held until the relearning ends
        IEnumerable<object> Asks() => devices.ReceiveWhile(TimeSpan.FromMilliseconds(500), m => m).OfType<Weft.Cluster.Devices.ReportEndpointsAgain>();
        // While b's resync may still be answered, its heartbeat asks for nothing.
        restarted.Tell(new DeviceOnline("tn_lost_resync", "dev_b", true, Created, HoldsEndpoints: true));
        Assert.Empty(Asks());

        // The relearning gives up on b (a's held full map goes out), and b stays unknown.
        var map = Weft.Contracts.Control.NetMap.Parser.ParseFrom(
            devices.FishForMessage<NetMapSnapshot>(m => m.DeviceId == "dev_a", TailnetActor.RelearnDeadline * 3).NetMap);
        Assert.True(map.Peers.Single().EndpointsUnknown);
        // A heartbeat from an entity that holds no endpoints asks for nothing: there is nothing to send.
        restarted.Tell(new DeviceOnline("tn_lost_resync", "dev_b", true, Created, HoldsEndpoints: false));
        Assert.Empty(Asks());
        // One from an entity that holds them asks it to report them again.
        restarted.Tell(new DeviceOnline("tn_lost_resync", "dev_b", true, Created, HoldsEndpoints: true));
        Assert.Equal("dev_b", devices.FishForMessage<Weft.Cluster.Devices.ReportEndpointsAgain>(_ => true).DeviceId);

        // The entity's report makes them known: a gets b's node restated, with its endpoints.
        restarted.Tell(new UpdateDeviceEndpoints("tn_lost_resync", "dev_b", ["198.18.3.2:1"], 0, ""));
        ExpectMsg<DeviceInfo>();
        var restated = Weft.Contracts.Control.NetMapDelta.Parser.ParseFrom(devices.FishForMessage<Weft.Cluster.Devices.PeerChanges>(m => m.DeviceId == "dev_a").Delta);
        Assert.Equal(["198.18.3.2:1"], restated.PeersChanged.Single().Endpoints);
        Assert.False(restated.PeersChanged.Single().EndpointsUnknown);
        // Known now, so later heartbeats ask for nothing.
        restarted.Tell(new DeviceOnline("tn_lost_resync", "dev_b", true, Created, HoldsEndpoints: true));
        Assert.Empty(Asks());
    }

    [Fact]
    public void What_a_tailnet_sends_each_device_is_numbered_and_a_heartbeat_that_heard_less_than_was_sent_a_while_ago_gets_a_resync()
    {
        // Remoting delivers at most once: a change lost between the tailnet's node and the device's leaves no gap in the
        // device's versions, and a lost last one is followed by nothing that could show it. The entity's heartbeat says
        // what it heard last; once the last message had the time to arrive, less than that means it was lost.
        const string id = "tn_numbered";
        var clock = new ManualClock(Created, monotonicToo: true);
        var devices = CreateTestProbe();
        Akka.Hosting.ActorRegistry.For(Sys).Register<Weft.Cluster.Devices.DeviceActor>(devices.Ref);
        var tailnet = Sys.ActorOf(TailnetActor.PropsFor(id, new PersistenceSettings(), clock));
        CreateWithDevices(tailnet, id, "dev_a", "dev_b");
        devices.ReceiveWhile(TimeSpan.FromMilliseconds(300), m => m);

        Weft.Cluster.Devices.FanOutStamp NextToA(Func<object, bool>? what = null) =>
            devices.FishForMessage(m => m is Weft.Cluster.Devices.PeerChanges { DeviceId: "dev_a" } or NetMapSnapshot { DeviceId: "dev_a" } && (what?.Invoke(m) ?? true)) switch
            {
                Weft.Cluster.Devices.PeerChanges changes => changes.Stamp,
                NetMapSnapshot map => map.Stamp,
                var other => throw new InvalidOperationException(other.GetType().Name),
            };
        tailnet.Tell(new UpdateDeviceEndpoints(id, "dev_b", ["198.18.3.2:1"], 0, ""));
        ExpectMsg<DeviceInfo>();
        var change = NextToA();
        Assert.False(change.IsNone);
        tailnet.Tell(new SendNetMap(id, "dev_a"));
        var map = NextToA();
        Assert.Equal(new Weft.Cluster.Devices.FanOutStamp(change.Incarnation, change.Sequence + 1), map); // changes and full maps: one count

        // Heard everything: nothing to say. Heard less, but the last message went a moment ago: it may be on its way.
        IEnumerable<object> ToA() => devices.ReceiveWhile(TimeSpan.FromMilliseconds(300), m => m)
            .Where(m => m is Weft.Cluster.Devices.PeerChanges { DeviceId: "dev_a" } or NetMapSnapshot { DeviceId: "dev_a" });
        tailnet.Tell(new DeviceOnline(id, "dev_a", true, Created) { Heard = map });
        tailnet.Tell(new DeviceOnline(id, "dev_a", true, Created) { Heard = change });
        Assert.Empty(ToA());

        // Long enough later, one heartbeat that has not heard it may still have been made before it arrived (and waited
        // in a busy mailbox); a second one too says it was lost: a resync, numbered next.
        clock.Advance(Weft.Cluster.Tailnets.FanOutNumbering.InFlightAllowance + TimeSpan.FromSeconds(1));
        tailnet.Tell(new DeviceOnline(id, "dev_a", true, Created) { Heard = change });
        Assert.Empty(ToA());
        tailnet.Tell(new DeviceOnline(id, "dev_a", true, Created) { Heard = change });
        var resync = devices.FishForMessage<Weft.Cluster.Devices.PeerChanges>(m => m.DeviceId == "dev_a");
        Assert.True(resync.Resync);
        Assert.Equal(map.Sequence + 1, resync.Stamp.Sequence);

        // An entity that heard another incarnation only (this one's messages never reached it) is resynced too; one
        // that heard nothing since it started says nothing (its next session starts from a full map).
        clock.Advance(Weft.Cluster.Tailnets.FanOutNumbering.InFlightAllowance + TimeSpan.FromSeconds(1));
        tailnet.Tell(new DeviceOnline(id, "dev_a", true, Created) { Heard = new(change.Incarnation + 1, 40) });
        tailnet.Tell(new DeviceOnline(id, "dev_a", true, Created) { Heard = new(change.Incarnation + 1, 40) });
        Assert.True(devices.FishForMessage<Weft.Cluster.Devices.PeerChanges>(m => m.DeviceId == "dev_a").Resync);
        clock.Advance(Weft.Cluster.Tailnets.FanOutNumbering.InFlightAllowance + TimeSpan.FromSeconds(1));
        tailnet.Tell(new DeviceOnline(id, "dev_a", true, Created));
        Assert.Empty(ToA());
    }

    [Fact]
    public void A_disconnect_heard_by_an_incarnation_that_never_saw_the_device_online_is_still_recorded_as_its_last_sighting()
    {
        // The device was online in the incarnation before (the tailnet moved, or its node died) and went as this one
        // started: its entity's "offline" reached an incarnation that had not heard it online, and was dropped.
        var (devices, restarted) = RestartedAfterBReported("tn_last_seen");
        devices.ReceiveWhile(TimeSpan.FromMilliseconds(300), m => m);
        var disconnected = Created.AddHours(3);
        restarted.Tell(new DeviceOnline("tn_last_seen", "dev_b", false, disconnected));
        AwaitAssert(() =>
        {
            restarted.Tell(new GetDevice("tn_last_seen", "dev_b"));
            Assert.Equal(disconnected, ExpectMsg<DeviceInfo>().Device.LastSeen);
        }, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(100));

        // An older report changes nothing (a reordered pair of disconnects).
        restarted.Tell(new DeviceOnline("tn_last_seen", "dev_b", false, disconnected.AddMinutes(-5)));
        ExpectNoMsg(TimeSpan.FromMilliseconds(300)); // time for a write, were one made
        restarted.Tell(new GetDevice("tn_last_seen", "dev_b"));
        Assert.Equal(disconnected, ExpectMsg<DeviceInfo>().Device.LastSeen);
    }

    [Fact]
    public void A_session_that_outlived_its_devices_expiry_is_ended_by_its_next_heartbeat()
    {
        const string id = "tn_lost_expiry";
        var (devices, tailnet) = WithDevicesAAndB(id);
        tailnet.Tell(new DeviceOnline(id, "dev_b", true, Created));
        devices.ReceiveWhile(TimeSpan.FromMilliseconds(300), m => m);

        // b expires; the end of its session goes to its entity, which had no session at that moment,
        // so the end is lost and the session (re-attaching a moment later) carries on.
        tailnet.Tell(new ExpireDevice(id, "dev_b", Created.AddHours(1)));
        ExpectMsg<DeviceInfo>();
        Weft.Cluster.Devices.PeerChanges EndOfB() => devices.FishForMessage<Weft.Cluster.Devices.PeerChanges>(m => m.DeviceId == "dev_b" && m.EndCode is not null);
        Assert.Equal(Weft.Contracts.Control.ControlErrorCodes.DeviceExpired, EndOfB().EndCode);
        devices.ReceiveWhile(TimeSpan.FromMilliseconds(300), m => m);

        // Its next heartbeat ends it again, with what the agent needs to come back.
        tailnet.Tell(new DeviceOnline(id, "dev_b", true, Created.AddHours(1), HoldsEndpoints: true));
        var end = EndOfB();
        Assert.Equal(Weft.Contracts.Control.ControlErrorCodes.DeviceExpired, end.EndCode);
        Assert.Contains("--force-reauth", end.EndMessage);
        // An active device's heartbeat ends nothing.
        tailnet.Tell(new DeviceOnline(id, "dev_a", true, Created.AddHours(1)));
        Assert.DoesNotContain(devices.ReceiveWhile(TimeSpan.FromMilliseconds(500), m => m).OfType<Weft.Cluster.Devices.PeerChanges>(), m => m.EndCode is not null);
    }

    [Fact]
    public void A_session_whose_device_or_tailnet_was_deleted_is_ended_by_its_next_heartbeat_and_is_sent_no_full_map()
    {
        const string id = "tn_lost_removal";
        var (devices, tailnet) = WithDevicesAAndB(id);
        Weft.Cluster.Devices.PeerChanges EndOf(string device) => devices.FishForMessage<Weft.Cluster.Devices.PeerChanges>(m => m.DeviceId == device && m.EndCode is not null);

        // b is deleted; the removal its entity is sent is lost (the entity was moving), so its session carries on.
        tailnet.Tell(new DeleteDevice(id, "dev_b"));
        ExpectMsg<object>();
        Assert.Equal("dev_b", devices.FishForMessage<Weft.Cluster.Devices.MarkDeviceRemoved>(_ => true).DeviceId);
        devices.ReceiveWhile(TimeSpan.FromMilliseconds(300), m => m);
        tailnet.Tell(new DeviceOnline(id, "dev_b", true, Created));
        Assert.Equal(Weft.Contracts.Control.ControlErrorCodes.DeviceDeleted, EndOf("dev_b").EndCode);

        // The tailnet is deleted, and a's removal is lost too: a's heartbeat ends a's session, and a's
        // request for a full map is answered with the end, not with the deleted tailnet's map.
        tailnet.Tell(new DeleteTailnet(id, Created.AddHours(1)));
        ExpectMsg<TailnetDeletedAck>();
        devices.ReceiveWhile(TimeSpan.FromMilliseconds(300), m => m);
        tailnet.Tell(new DeviceOnline(id, "dev_a", true, Created.AddHours(1)));
        var end = EndOf("dev_a");
        Assert.Equal((Weft.Contracts.Control.ControlErrorCodes.DeviceDeleted, "the tailnet was deleted"), (end.EndCode, end.EndMessage));
        tailnet.Tell(new SendNetMap(id, "dev_a"));
        var answers = devices.ReceiveWhile(TimeSpan.FromSeconds(1), m => m);
        Assert.DoesNotContain(answers, m => m is NetMapSnapshot);
        Assert.Contains(answers.OfType<Weft.Cluster.Devices.PeerChanges>(), m => m.DeviceId == "dev_a" && m.EndCode == Weft.Contracts.Control.ControlErrorCodes.DeviceDeleted);
    }

    [Fact]
    public void Asked_to_stop_with_writes_in_flight_an_entity_stores_and_answers_them_first_and_a_restart_holds_them()
    {
        var tailnet = Spawn("tn_stop");
        Create(tailnet, "tn_stop");
        Watch(tailnet);
        for (var days = 1; days <= 20; days++) tailnet.Tell(new ChangeTailnetSettings("tn_stop", NodeKeyExpiryDays: days));
        tailnet.Tell(StopEntity.Instance);

        for (var days = 1; days <= 20; days++) Assert.Equal(days, ExpectMsg<TailnetInfo>().Settings.NodeKeyExpiryDays);
        ExpectTerminated(tailnet);
        var restarted = Spawn("tn_stop");
        restarted.Tell(new GetTailnet("tn_stop"));
        Assert.Equal(20, ExpectMsg<TailnetInfo>().Settings.NodeKeyExpiryDays);

        // With nothing in flight it stops at once.
        Watch(restarted);
        restarted.Tell(StopEntity.Instance);
        ExpectTerminated(restarted);
    }

    /// <summary>
    /// A tailnet whose fan-outs are coalesced over <paramref name="window"/>, with <paramref name="devices"/>
    /// registered, and a probe standing in for the device entities. Returns once the registrations' fan-outs
    /// are out (the last may wait for a window's end) and a quiet spell longer than the window has passed.
    /// </summary>
    private (IActorRef Tailnet, Akka.TestKit.TestProbe Devices) QuietTailnetWithFanOutWindow(string id, TimeSpan window, params string[] devices)
    {
        var probe = CreateTestProbe();
        Akka.Hosting.ActorRegistry.For(Sys).Register<Weft.Cluster.Devices.DeviceActor>(probe.Ref);
        var tailnet = Sys.ActorOf(TailnetActor.PropsFor(id, new PersistenceSettings(),
            control: new Weft.Cluster.Control.ControlSettings { FanOutCoalesceMilliseconds = window.TotalMilliseconds }));
        CreateWithDevices(tailnet, id, devices);
        probe.ReceiveWhile(TimeSpan.FromSeconds(30), window + TimeSpan.FromMilliseconds(500), m => m);
        return (tailnet, probe);
    }

    [Fact]
    public void After_a_quiet_spell_a_change_goes_out_at_once_and_changes_within_the_window_go_out_together()
    {
        var window = TimeSpan.FromSeconds(2);
        var (tailnet, devices) = QuietTailnetWithFanOutWindow("tn_window", window, "dev_a", "dev_b", "dev_c");

        // The first change goes out alone: its fan-out is queued behind what the tailnet had already
        // received, and c's change is sent only once b's is answered. (A timer would have joined them.)
        tailnet.Tell(new UpdateDeviceEndpoints("tn_window", "dev_b", ["198.18.3.2:1"], 0, ""));
        ExpectMsg<DeviceInfo>();
        tailnet.Tell(new UpdateDeviceEndpoints("tn_window", "dev_c", ["198.18.3.3:1"], 0, ""));
        tailnet.Tell(new UpdateDeviceEndpoints("tn_window", "dev_b", ["198.18.3.2:2"], 0, ""));
        ExpectMsg<DeviceInfo>();
        ExpectMsg<DeviceInfo>();
        string Patches(Weft.Cluster.Devices.PeerChanges changes) => string.Join(" ",
            Weft.Contracts.Control.NetMapDelta.Parser.ParseFrom(changes.Delta).Patches.OrderBy(p => p.Id).Select(p => $"{p.Id}={string.Join(",", p.Endpoints.Endpoints)}"));
        var first = devices.FishForMessage<Weft.Cluster.Devices.PeerChanges>(m => m.DeviceId == "dev_a");
        Assert.Equal("dev_b=198.18.3.2:1", Patches(first));

        // The two within the window go out together at its end.
        var second = devices.FishForMessage<Weft.Cluster.Devices.PeerChanges>(m => m.DeviceId == "dev_a", window * 3);
        Assert.Equal("dev_b=198.18.3.2:2 dev_c=198.18.3.3:1", Patches(second));
    }

    [Fact]
    public void A_device_expired_and_re_authorized_within_one_window_keeps_its_session_and_gets_a_full_map()
    {
        var window = TimeSpan.FromSeconds(2);
        var (tailnet, devices) = QuietTailnetWithFanOutWindow("tn_reauth", window, "dev_a", "dev_b");

        // A change goes out at once, so that the next ones wait for the window to close.
        tailnet.Tell(new UpdateDeviceEndpoints("tn_reauth", "dev_b", ["198.18.3.2:1"], 0, ""));
        ExpectMsg<DeviceInfo>();
        tailnet.Tell(new ExpireDevice("tn_reauth", "dev_a", Created));
        ExpectMsg<DeviceInfo>();
        // The same machine registers again with a key, under a new node key.
        tailnet.Tell(new RegisterDevice("tn_reauth", "dev_x", new string('a', 64), new string('e', 64), "", "dev_a", "linux", "k", "h", Created));
        Assert.Equal("dev_a", ExpectMsg<DeviceRegistration>().Device.DeviceId);

        var toA = devices.ReceiveWhile(window * 3, TimeSpan.FromMilliseconds(window.TotalMilliseconds + 1000), m => m)
            .OfType<Weft.Cluster.Devices.PeerChanges>().Where(m => m.DeviceId == "dev_a").ToList();
        Assert.All(toA, m => Assert.Null(m.EndCode));
        Assert.Contains(toA, m => m.Resync);
    }

    [Fact]
    public void A_tailnet_that_started_before_the_device_region_was_registered_still_reaches_the_devices()
    {
        // A remembered tailnet can start on a node before that node's device region is registered.
        var tailnet = Spawn("tn_early");
        CreateWithDevices(tailnet, "tn_early", "dev_a", "dev_b");

        var devices = CreateTestProbe();
        Akka.Hosting.ActorRegistry.For(Sys).Register<Weft.Cluster.Devices.DeviceActor>(devices.Ref);
        tailnet.Tell(new UpdateDeviceEndpoints("tn_early", "dev_b", ["198.18.3.2:1"], 0, ""));
        ExpectMsg<DeviceInfo>();
        // The registrations' own deltas may reach the probe first (their coalescing window can end after it was
        // registered): the endpoint change must follow them.
        devices.FishForMessage<Weft.Cluster.Devices.PeerChanges>(
            m => m.DeviceId == "dev_a" && Weft.Contracts.Control.NetMapDelta.Parser.ParseFrom(m.Delta).ToString().Contains("198.18.3.2:1"), TimeSpan.FromSeconds(5));
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

    [Fact]
    public void A_command_or_question_that_throws_is_answered_with_an_internal_error_and_the_entity_keeps_what_it_holds_in_memory()
    {
        var tally = Sys.ActorOf(Props.Create(() => new Tally("tally-1")));
        tally.Tell(new Tally.Remember("soft state"));

        tally.Tell(new Tally.Add(1));
        tally.Tell(new Tally.Add(-1)); // its decision throws: a defect
        tally.Tell(new Tally.Add(2));
        Assert.Equal(1, ExpectMsg<int>());
        var refused = ExpectMsg<Rejection>();
        Assert.Equal(ApiErrorCodes.Internal, refused.Code); // not asked again: it would run the same defect
        Assert.Contains("nothing was written", refused.Message);
        Assert.Equal(3, ExpectMsg<int>());

        tally.Tell(new Tally.Explode());
        Assert.Contains("internal error", ExpectMsg<Rejection>().Message);
        tally.Tell(new Tally.Recall());
        Assert.Equal("soft state", ExpectMsg<string>()); // not restarted: a restart forgets it
        tally.Tell(new Tally.Add(4));
        Assert.Equal(7, ExpectMsg<int>());
    }

    /// <summary>A sum, with a defect in one command's decision and in one question, and a note kept in memory only.</summary>
    private sealed class Tally(string id) : EventSourcedEntity<Tally.Sum, Tally.Added>(new PersistenceSettings(), new Sum(0))
    {
        public sealed record Sum(int Value);
        public sealed record Added(int Amount);
        public sealed record Add(int Amount);
        public sealed record Remember(string Note);
        public sealed record Recall;
        public sealed record Explode;

        private string _note = "";

        public override string PersistenceId => id;
        protected override bool KeepsSnapshots => false;
        protected override Sum Apply(Sum state, Added @event) => new(state.Value + @event.Amount);
        protected override bool IsCommand(object message) => message is Add;

        protected override Decision<Added> Decide(Sum state, object command) =>
            ((Add)command).Amount >= 0 ? Decision<Added>.Accept(new Added(((Add)command).Amount)) : throw new InvalidOperationException("a defect");

        protected override bool TryAnswer(Sum state, object message, out object reply)
        {
            reply = message switch
            {
                Recall => _note,
                Explode => throw new InvalidOperationException("another defect"),
                _ => null!,
            };
            return reply is not null;
        }

        protected override bool HandleOther(object message)
        {
            if (message is not Remember remember) return false;
            _note = remember.Note;
            return true;
        }

        protected override object Acknowledge(object command, Sum stateAfter) => stateAfter.Value;
    }
}
