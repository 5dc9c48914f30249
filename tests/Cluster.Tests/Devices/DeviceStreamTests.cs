using Akka.Actor;
using Akka.Hosting;
using Akka.TestKit;
using Google.Protobuf;
using Weft.Cluster.Devices;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Control;

namespace Weft.Cluster.Tests.Devices;

/// <summary>
/// The device entity's stream on its own, with a probe standing in for the tailnet: what it does
/// when the tailnet's answer never comes.
/// </summary>
public class DeviceStreamTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Retry = TimeSpan.FromMilliseconds(300);
    private readonly TestProbe _tailnet;

    public DeviceStreamTests() : base(TestActorSystems.InMemoryPersistence)
    {
        _tailnet = CreateTestProbe("tailnet");
        _tailnet.IgnoreMessages(message => message is DeviceOnline);
        ActorRegistry.For(Sys).Register<TailnetActor>(_tailnet.Ref);
    }

    private IActorRef StartDevice(string deviceId)
    {
        var device = Sys.ActorOf(DeviceActor.PropsFor(deviceId, new PersistenceSettings(), TimeProvider.System, [], Retry));
        device.Tell(new InitializeDevice(deviceId, "tn_stream"));
        ExpectMsg<DeviceReady>();
        return device;
    }

    /// <summary>A session probe attached to the device at <paramref name="lastVersion"/> (0: it holds nothing yet).</summary>
    private TestProbe Attached(IActorRef device, string deviceId, string name, ulong lastVersion)
    {
        var session = CreateTestProbe(name);
        device.Tell(new AttachSession(deviceId, session.Ref, lastVersion, false));
        session.ExpectMsg<SessionAttached>();
        return session;
    }

    /// <summary>A session probe that attaches with the agent's report: the tailnet hears the report, and the session gets its full map.</summary>
    private TestProbe AttachedWithReport(IActorRef device, string deviceId, string name, UpdateDeviceEndpoints report)
    {
        var session = CreateTestProbe(name);
        device.Tell(new AttachSession(deviceId, session.Ref, 0, false, report));
        session.ExpectMsg<SessionAttached>();
        Assert.Equal(report, _tailnet.ExpectMsg<UpdateDeviceEndpoints>());
        ServeFullMap(device, deviceId, session);
        return session;
    }

    private SendNetMap ExpectMapRequest() => _tailnet.ExpectMsg<SendNetMap>(TimeSpan.FromSeconds(10));

    /// <summary>The device asks the tailnet for a full map, the tailnet answers with one peer, and the session gets it.</summary>
    private DeliverToAgent ServeFullMap(IActorRef device, string deviceId, TestProbe session)
    {
        ExpectMapRequest();
        device.Tell(Snapshot(deviceId, "peer"));
        return session.ExpectMsg<DeliverToAgent>();
    }

    private static NetMapSnapshot Snapshot(string deviceId, string peerName) =>
        new("tn_stream", deviceId, new NetMap { Peers = { new Node { Name = peerName } } }.ToByteArray());

    private static PeerChanges Delta(string deviceId, string peerName) =>
        new(deviceId, new NetMapDelta { PeersChanged = { new Node { Name = peerName } } }.ToByteArray(), false, null, null);

    private static ServerMessage Read(DeliverToAgent delivery) => ServerMessage.Parser.ParseFrom(delivery.ServerMessage);

    [Fact]
    public void A_device_restarted_in_place_outlives_the_end_of_the_session_it_had_before_and_serves_the_next()
    {
        var device = StartDevice("dev_stale_session");
        var old = Attached(device, "dev_stale_session", "old-session", 0);
        ServeFullMap(device, "dev_stale_session", old);
        Watch(device);

        // Bad input crashes it: it restarts in place (its watch on the session stays) and asks the session to attach again.
        device.Tell(new PeerChanges("dev_stale_session", [0xff, 0xff, 0xff], false, null, null));
        old.FishForMessage(message => message is AttachAgain, TimeSpan.FromSeconds(10));

        // That session ends before it does (its agent went away): nothing to detach, and no reason to stop.
        Sys.Stop(old.Ref);
        ExpectNoMsg(TimeSpan.FromMilliseconds(500));

        // The agent's next session attaches to the same incarnation.
        Attached(device, "dev_stale_session", "new-session", 0);
        ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void A_change_numbered_after_one_that_was_lost_starts_the_device_again_from_a_full_map_and_its_heartbeat_says_what_it_heard()
    {
        const string id = "dev_gap";
        var device = StartDevice(id);
        var session = Attached(device, id, "session", 0);
        ExpectMapRequest();
        var map = new Weft.Cluster.Devices.FanOutStamp(77, 1);
        device.Tell(Snapshot(id, "peer") with { Stamp = map });
        session.ExpectMsg<DeliverToAgent>();
        device.Tell(Delta(id, "peer-2") with { Stamp = map with { Sequence = 2 } });
        Assert.Equal(ServerMessage.BodyOneofCase.Delta, Read(session.ExpectMsg<DeliverToAgent>()).BodyCase);

        // #3 was lost between the nodes. #4 shows the gap: not passed on (the session would miss #3 for good, with
        // versions that say nothing of it), but taken as a resync: the soft state is reported again, and a full map asked for.
        _tailnet.IgnoreNoMessages();
        device.Tell(Delta(id, "peer-4") with { Stamp = map with { Sequence = 4 } });
        Assert.Equal(id, _tailnet.FishForMessage<DeviceReportedAgain>(_ => true).DeviceId);
        ExpectMapRequest();
        session.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        device.Tell(Snapshot(id, "peer-4") with { Stamp = map with { Sequence = 5 } });
        var full = session.ExpectMsg<DeliverToAgent>();
        Assert.Equal(ServerMessage.BodyOneofCase.Netmap, Read(full).BodyCase);

        // Each heartbeat (a repeated attach) tells the tailnet the last it heard, for a lost last message to show.
        device.Tell(new AttachSession(id, session.Ref, full.Version, false));
        session.ExpectMsg<SessionAttached>();
        Assert.Equal(map with { Sequence = 5 }, _tailnet.FishForMessage<DeviceOnline>(_ => true).Heard);

        // The next change in order passes; a new tailnet incarnation's first message (its resync) is in order too.
        device.Tell(Delta(id, "peer-6") with { Stamp = map with { Sequence = 6 } });
        Assert.Equal(ServerMessage.BodyOneofCase.Delta, Read(session.FishForMessage<DeliverToAgent>(_ => true)).BodyCase);
        device.Tell(new PeerChanges(id, [], true, null, null) { Stamp = new(78, 1) });
        _tailnet.FishForMessage<SendNetMap>(_ => true);
        device.Tell(Snapshot(id, "peer") with { Stamp = new(78, 2) });
        Assert.Equal(ServerMessage.BodyOneofCase.Netmap, Read(session.FishForMessage<DeliverToAgent>(_ => true)).BodyCase);
        device.Tell(Delta(id, "peer-7") with { Stamp = new(78, 3) });
        Assert.Equal(ServerMessage.BodyOneofCase.Delta, Read(session.FishForMessage<DeliverToAgent>(_ => true)).BodyCase);
        _tailnet.ExpectNoMsg(TimeSpan.FromMilliseconds(300)); // no gap seen: no map asked for

        // A message the replaced incarnation sent before it went, held up on a busy link until now: neither a loss nor
        // news (its successor's full map covers it). It is not passed on, and the next of the successor's is in order.
        device.Tell(Delta(id, "stale") with { Stamp = new(77, 9) });
        session.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        _tailnet.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        device.Tell(Delta(id, "peer-8") with { Stamp = new(78, 4) });
        Assert.Equal(ServerMessage.BodyOneofCase.Delta, Read(session.FishForMessage<DeliverToAgent>(_ => true)).BodyCase);
        _tailnet.ExpectNoMsg(TimeSpan.FromMilliseconds(300));

        // A loss while a full map is awaited (the lost message may be that map): asked for under a new need, which the
        // tailnet cannot take for a repeat of one it answered.
        device.Tell(new AttachSession(id, session.Ref, 0, false));
        var awaited = _tailnet.FishForMessage<SendNetMap>(_ => true).Need;
        device.Tell(Delta(id, "peer-10") with { Stamp = new(78, 6) });
        Assert.NotEqual(awaited, _tailnet.FishForMessage<SendNetMap>(_ => true).Need);
    }

    [Fact]
    public void Its_heartbeat_says_whether_it_holds_endpoints_and_asked_again_it_reports_the_newest_it_holds()
    {
        var device = StartDevice("dev_ask_again");
        // Asked before it holds any: nothing to report.
        device.Tell(new ReportEndpointsAgain("dev_ask_again"));
        _tailnet.ExpectNoMsg(TimeSpan.FromMilliseconds(300));

        var report = new UpdateDeviceEndpoints("tn_stream", "dev_ask_again", ["198.18.3.7:41641"], 1, "discokey:aa", 5);
        var session = AttachedWithReport(device, "dev_ask_again", "session", report);
        device.Tell(new ReportEndpointsAgain("dev_ask_again"));
        Assert.Equal(report, _tailnet.ExpectMsg<UpdateDeviceEndpoints>());

        // Every attach is a heartbeat, and now it says the entity holds endpoints.
        _tailnet.IgnoreNoMessages();
        device.Tell(new AttachSession("dev_ask_again", session.Ref, 0, false));
        session.ExpectMsg<SessionAttached>();
        Assert.True(_tailnet.FishForMessage<DeviceOnline>(_ => true).HoldsEndpoints);
    }

    [Fact]
    public void A_new_device_numbers_its_stream_from_the_epoch_stored_with_its_initialization_and_each_later_activation_stores_the_next()
    {
        const string id = "dev_epochs";
        var settings = new PersistenceSettings();
        var device = Sys.ActorOf(DeviceActor.PropsFor(id, settings, TimeProvider.System, [], Retry));
        device.Tell(new InitializeDevice(id, "tn_stream"));
        // The first epoch is stored in the initialization's own write: the first session attaches without a second one.
        Assert.Equal(1, ExpectMsg<DeviceReady>().Incarnation);
        var first = Attached(device, id, "first-session", 0);
        var firstNeed = ExpectMapRequest().Need;
        device.Tell(Snapshot(id, "peer"));
        Assert.Equal(1UL << 32 | 1, first.ExpectMsg<DeliverToAgent>().Version);

        // Passivated (or moved, or its node restarted): the next activation must never number from epoch 1 again.
        Watch(device);
        device.Tell(StopEntity.Instance);
        ExpectTerminated(device);
        var again = Sys.ActorOf(DeviceActor.PropsFor(id, settings, TimeProvider.System, [], Retry));
        // A repeated registration reaches it first: that stores nothing, and the stream still waits for an epoch of its own.
        again.Tell(new InitializeDevice(id, "tn_stream"));
        Assert.Equal(1, ExpectMsg<DeviceReady>().Incarnation);
        var second = CreateTestProbe("second-session");
        again.Tell(new AttachSession(id, second.Ref, 1UL << 32 | 1, false));
        Assert.Equal(2UL << 32, second.ExpectMsg<SessionAttached>().Version);
        // Its map request is named in the new epoch: a tailnet that answered the first activation's need
        // (and remembers it for a while) does not take this one for a repeat of it.
        var secondNeed = ExpectMapRequest().Need;
        Assert.Equal(1UL, firstNeed >> 32);
        Assert.Equal(2UL, secondNeed >> 32);
        again.Tell(Snapshot(id, "peer"));
        Assert.Equal(2UL << 32 | 1, second.ExpectMsg<DeliverToAgent>().Version);
    }

    [Fact]
    public void A_full_map_request_that_is_lost_is_sent_again_and_the_stream_carries_on()
    {
        var device = StartDevice("dev_lost_map");
        var session = Attached(device, "dev_lost_map", "session", 0);
        Assert.Equal("dev_lost_map", ExpectMapRequest().DeviceId);
        // The tailnet moved while the request was on its way: no answer comes. A change that the
        // lost map would have carried is dropped by the device meanwhile, as designed.
        device.Tell(Delta("dev_lost_map", "changed-while-waiting"));
        session.ExpectNoMsg(Retry / 2);

        Assert.Equal("dev_lost_map", ExpectMapRequest().DeviceId);
        device.Tell(Snapshot("dev_lost_map", "in-the-retried-map"));
        var map = Read(session.ExpectMsg<DeliverToAgent>());
        Assert.Equal("in-the-retried-map", Assert.Single(map.Netmap.Peers).Name);

        device.Tell(Delta("dev_lost_map", "after-the-map"));
        var delta = Read(session.ExpectMsg<DeliverToAgent>());
        Assert.Equal(map.Netmap.Version, delta.Delta.BaseVersion);
        Assert.Equal("after-the-map", Assert.Single(delta.Delta.PeersChanged).Name);

        // Answered: no further request.
        _tailnet.ExpectNoMsg(Retry * 3);
    }

    [Fact]
    public void Repeats_of_an_unanswered_full_map_request_name_the_same_need_and_every_third_asks_the_tailnet_to_answer_again()
    {
        var device = StartDevice("dev_repeats");
        var session = Attached(device, "dev_repeats", "session", 0);
        var first = ExpectMapRequest();
        Assert.NotEqual(0UL, first.Need);
        Assert.Null(first.ForcedAt);

        // A tailnet that is only slow gets these together with the first: the same need, so it answers once.
        // Every third repeat is forced, and says when it was sent, in case the first answer was lost on its way.
        var repeats = Enumerable.Range(0, 4).Select(_ => ExpectMapRequest()).ToList();
        Assert.All(repeats, repeat => Assert.Equal(first.Need, repeat.Need));
        Assert.Equal([false, false, true, false], repeats.Select(r => r.ForcedAt is not null));

        // A tailnet that started over asks for a resync meanwhile: the map still asked for will do, asked again
        // under the same need, so that a new incarnation that got the first request too builds it once.
        device.Tell(new PeerChanges("dev_repeats", [], true, null, null));
        _tailnet.FishForMessage<DeviceReportedAgain>(_ => true, TimeSpan.FromSeconds(10));
        Assert.Equal(first.Need, _tailnet.ExpectMsg<SendNetMap>().Need); // sent in the same turn: no timer's repeat comes between

        device.Tell(Snapshot("dev_repeats", "peer"));
        Assert.Equal(ServerMessage.BodyOneofCase.Netmap, Read(session.ExpectMsg<DeliverToAgent>()).BodyCase);
        _tailnet.ReceiveWhile(Retry * 2, m => m); // a repeat the timer sent before the map came

        // Once the map has come, a resync is a new need, named anew and not forced.
        device.Tell(new PeerChanges("dev_repeats", [], true, null, null));
        _tailnet.FishForMessage<DeviceReportedAgain>(_ => true, TimeSpan.FromSeconds(10));
        var afterResync = _tailnet.ExpectMsg<SendNetMap>();
        Assert.NotEqual(first.Need, afterResync.Need);
        Assert.Null(afterResync.ForcedAt);
    }

    [Fact]
    public void A_sessions_own_repeat_sent_before_its_stream_could_arrive_sends_nothing_again_and_one_sent_later_resumes_it()
    {
        const string id = "dev_served";
        var device = StartDevice(id);
        var session = Attached(device, id, "session", 0);
        var map = Read(ServeFullMap(device, id, session));

        // The session's heartbeat, or its repeat of an attach whose answer was slow, says what it had passed on
        // when it was sent. Sent before the map could have arrived, it is behind the map, which is on its way:
        // nothing is asked or sent again, however late the repeat is read.
        var now = DateTimeOffset.UtcNow.UtcTicks;
        device.Tell(new AttachSession(id, session.Ref, 0, false, RepeatedAt: now));
        session.ExpectMsg<SessionAttached>();
        device.Tell(new AttachSession(id, session.Ref, 0, true, RepeatedAt: now));
        session.ExpectMsg<SessionAttached>();
        session.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        _tailnet.ExpectNoMsg(Retry * 2);

        // A delta the session says it has not passed on, in a heartbeat sent well after the delta went out:
        // lost between nodes. The stream resumes after what the session holds.
        device.Tell(Delta(id, "lost-on-the-way"));
        var lost = Read(session.ExpectMsg<DeliverToAgent>());
        device.Tell(new AttachSession(id, session.Ref, map.Netmap.Version, false, RepeatedAt: DateTimeOffset.UtcNow.Add(DeviceActor.DeliveryAllowance).UtcTicks));
        session.ExpectMsg<SessionAttached>();
        Assert.Equal(lost.Delta.Version, Read(session.ExpectMsg<DeliverToAgent>()).Delta.Version);

        // The agent's own subscribe from behind the map (it found a gap) gets a new one.
        device.Tell(new AttachSession(id, session.Ref, 0, true));
        session.ExpectMsg<SessionAttached>();
        Assert.True(Read(ServeFullMap(device, id, session)).Netmap.Version > map.Netmap.Version);

        // A repeat from a session this entity has not served yet (the agent's new stream) is served as any attach.
        var next = CreateTestProbe("next-session");
        device.Tell(new AttachSession(id, next.Ref, 0, false, RepeatedAt: DateTimeOffset.UtcNow.UtcTicks));
        next.ExpectMsg<SessionAttached>();
        Assert.Equal(ServerMessage.BodyOneofCase.Netmap, Read(ServeFullMap(device, id, next)).BodyCase);
    }

    [Fact]
    public void A_session_that_left_while_its_map_was_lost_is_followed_by_one_that_gets_a_full_map()
    {
        var device = StartDevice("dev_left");
        var first = Attached(device, "dev_left", "first-session", 0);
        ExpectMapRequest();
        Watch(first.Ref);
        Sys.Stop(first.Ref);
        ExpectTerminated(first.Ref);

        // With no session, the overdue request is not repeated...
        _tailnet.ExpectNoMsg(Retry * 3);

        // ...and the next session, whatever version it claims, starts from a full map.
        var second = Attached(device, "dev_left", "second-session", 0);
        Assert.Equal("peer", Assert.Single(Read(ServeFullMap(device, "dev_left", second)).Netmap.Peers).Name);
    }

    [Fact]
    public void A_session_that_comes_back_behind_resumes_from_the_kept_deltas_and_one_too_far_behind_gets_a_full_map()
    {
        var device = StartDevice("dev_resume");
        var first = Attached(device, "dev_resume", "first-session", 0);
        Read(ServeFullMap(device, "dev_resume", first));
        var sent = new List<NetMapDelta>();
        for (var i = 0; i < 3; i++)
        {
            device.Tell(Delta("dev_resume", $"change-{i}"));
            sent.Add(Read(first.ExpectMsg<DeliverToAgent>()).Delta);
        }

        // The agent held the second delta when its stream broke: the new stream gets the third, as it was sent, and no full map.
        var second = Attached(device, "dev_resume", "second-session", sent[1].Version);
        Assert.Equal(sent[2], Read(second.ExpectMsg<DeliverToAgent>()).Delta);
        second.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        _tailnet.ExpectNoMsg(TimeSpan.FromMilliseconds(200));

        // More changes than the log keeps: a stream that stopped at the third is too far behind to resume.
        for (var i = 0; i <= DeviceActor.DeltaLogEntries; i++)
        {
            device.Tell(Delta("dev_resume", $"later-{i}"));
            second.ExpectMsg<DeliverToAgent>();
        }
        var third = Attached(device, "dev_resume", "third-session", sent[2].Version);
        Assert.Equal("dev_resume", ExpectMapRequest().DeviceId);
        third.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    private static UpdateDeviceEndpoints Endpoints(string deviceId, string endpoint, long version) =>
        new("tn_stream", deviceId, [endpoint], 0, "", version);

    [Fact]
    public void A_late_attach_with_older_endpoints_does_not_roll_the_entity_back_and_a_tailnet_that_starts_over_hears_the_newest()
    {
        var device = StartDevice("dev_endpoints");
        var newer = Endpoints("dev_endpoints", "198.18.0.2:2", version: 200);
        var older = Endpoints("dev_endpoints", "198.18.0.1:1", version: 100);

        // The agent's current session attaches with its latest report: the tailnet hears it.
        AttachedWithReport(device, "dev_endpoints", "current-session", newer);

        // A session the agent has left re-attaches late, with the report it had: the tailnet hears nothing of it.
        var stale = CreateTestProbe("stale-session");
        device.Tell(new AttachSession("dev_endpoints", stale.Ref, 0, false, older));
        stale.ExpectMsg<SessionAttached>();
        Assert.IsType<SendNetMap>(_tailnet.ExpectMsg<object>());
        device.Tell(Snapshot("dev_endpoints", "peer"));
        stale.ExpectMsg<DeliverToAgent>();

        // An older report asked through the entity is answered with the newest it knows.
        device.Tell(new ReportEndpoints("dev_endpoints", older));
        Assert.Equal(newer, _tailnet.ExpectMsg<UpdateDeviceEndpoints>());

        // A tailnet that starts over asks every device again: it hears the newest.
        device.Tell(new PeerChanges("dev_endpoints", [], true, null, null));
        Assert.Equal(newer, _tailnet.ExpectMsg<UpdateDeviceEndpoints>());
        Assert.IsType<DeviceReportedAgain>(_tailnet.ExpectMsg<object>());
    }

    [Fact]
    public void A_tailnet_that_starts_over_while_the_device_is_between_sessions_hears_its_endpoints_when_the_next_session_attaches_even_unchanged()
    {
        var device = StartDevice("dev_between");
        var report = Endpoints("dev_between", "198.18.0.3:3", version: 300);
        var first = AttachedWithReport(device, "dev_between", "first-session", report);

        // The agent's stream drops (its coordinator node stalls); meanwhile its tailnet starts over on
        // another node and asks every device again. With no session here, only "reported" goes back.
        _tailnet.IgnoreNoMessages();
        Sys.Stop(first.Ref);
        _tailnet.FishForMessage(message => message is DeviceOnline { Online: false }, TimeSpan.FromSeconds(5));
        _tailnet.IgnoreMessages(message => message is DeviceOnline);
        device.Tell(new PeerChanges("dev_between", [], true, null, null));
        Assert.IsType<DeviceReportedAgain>(_tailnet.ExpectMsg<object>());

        // The agent comes back through a new session with the same report: the tailnet, which marked the
        // device's endpoints unknown, must hear them, although they repeat what the entity holds.
        var second = AttachedWithReport(device, "dev_between", "second-session", report);

        // Once told, a repeat is not news again.
        device.Tell(new AttachSession("dev_between", second.Ref, 0, false, report));
        second.ExpectMsg<SessionAttached>();
        Assert.IsNotType<UpdateDeviceEndpoints>(_tailnet.ExpectMsg<object>());
    }

    [Fact]
    public void A_late_attach_from_a_session_the_agent_left_minutes_ago_does_not_take_the_device_back_to_its_older_report()
    {
        var device = StartDevice("dev_late");
        var now = DateTimeOffset.UtcNow.UtcTicks;
        var newest = Endpoints("dev_late", "198.18.0.2:2", version: now);
        // What the session the agent left still carries: its report of two minutes before. A failover held its attach up.
        var older = Endpoints("dev_late", "198.18.0.1:1", version: now - TimeSpan.FromMinutes(2).Ticks);
        AttachedWithReport(device, "dev_late", "current", newest);

        var left = CreateTestProbe("left");
        device.Tell(new AttachSession("dev_late", left.Ref, 0, false, older));
        left.ExpectMsg<SessionAttached>();
        Assert.IsType<SendNetMap>(_tailnet.ExpectMsg<object>());

        // Asked through that session, and on a resync, the tailnet hears the newest report, never the older one.
        device.Tell(new ReportEndpoints("dev_late", older));
        Assert.Equal(newest, _tailnet.ExpectMsg<UpdateDeviceEndpoints>());
        device.Tell(Snapshot("dev_late", "peer"));
        left.ExpectMsg<DeliverToAgent>();
        device.Tell(new PeerChanges("dev_late", [], true, null, null));
        Assert.Equal(newest, _tailnet.ExpectMsg<UpdateDeviceEndpoints>());
    }

    [Fact]
    public void Every_attach_tells_the_session_the_version_of_the_newest_report_held_so_that_it_stamps_the_next_one_above_it()
    {
        var device = StartDevice("dev_stamp");
        var session = CreateTestProbe("session");
        device.Tell(new AttachSession("dev_stamp", session.Ref, 0, false));
        Assert.Equal(0, session.ExpectMsg<SessionAttached>().EndpointsVersion);
        ExpectMapRequest();

        // Stamped by a coordinator whose clock is ahead of the next one's.
        var report = Endpoints("dev_stamp", "198.18.0.1:1", version: DateTimeOffset.UtcNow.AddMinutes(5).UtcTicks);
        device.Tell(new ReportEndpoints("dev_stamp", report));
        Assert.Equal(report, _tailnet.ExpectMsg<UpdateDeviceEndpoints>());

        var next = CreateTestProbe("next");
        device.Tell(new AttachSession("dev_stamp", next.Ref, 0, false));
        Assert.Equal(report.Version, next.ExpectMsg<SessionAttached>().EndpointsVersion);
    }

    [Fact]
    public void A_late_attach_from_a_session_opened_before_the_attached_one_ends_that_session_and_the_agents_own_keeps_the_stream()
    {
        // Other tests' devices run in this process too: only this device's sessions are known, so the checks are "at least".
        var superseded = new System.Collections.Concurrent.ConcurrentDictionary<string, long>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument == Weft.Cluster.Telemetry.CoordinatorMetrics.SessionsSuperseded) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
            superseded.AddOrUpdate(string.Concat(tags.ToArray().Select(t => t.Value)), value, (_, sum) => sum + value));
        listener.Start();
        var device = StartDevice("dev_order");
        var current = CreateTestProbe("current");
        device.Tell(new AttachSession("dev_order", current.Ref, 0, false, StartedAt: 2_000));
        current.ExpectMsg<SessionAttached>();
        ServeFullMap(device, "dev_order", current);

        // The session the agent left before it opened the current one: a failover held its attach up.
        var left = CreateTestProbe("left");
        device.Tell(new AttachSession("dev_order", left.Ref, 0, false, StartedAt: 1_000));
        Assert.Equal(ControlErrorCodes.Unavailable, left.ExpectMsg<SessionEnded>().Code);
        current.ExpectNoMsg(TimeSpan.FromMilliseconds(300));

        // The stream still goes to the agent's session, and a later session of the agent still takes it over.
        var delta = new NetMapDelta { Patches = { new PeerPatch { Id = "peer", Online = true } } }.ToByteArray();
        device.Tell(new PeerChanges("dev_order", delta, false, null, null));
        current.ExpectMsg<DeliverToAgent>();
        var next = CreateTestProbe("next");
        device.Tell(new AttachSession("dev_order", next.Ref, 0, false, StartedAt: 3_000));
        next.ExpectMsg<SessionAttached>();
        Assert.Equal(ControlErrorCodes.Unavailable, current.ExpectMsg<SessionEnded>().Code);
        Assert.True(superseded.GetValueOrDefault("late") >= 1, "the late attach is counted");
        Assert.True(superseded.GetValueOrDefault("replaced") >= 1, "the session replaced by the agent's next one is counted");
    }
}
