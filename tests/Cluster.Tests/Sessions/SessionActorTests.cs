using Akka.Actor;
using Akka.TestKit;
using Google.Protobuf;
using Weft.Cluster.Control;
using Weft.Cluster.Devices;
using Weft.Cluster.Machines;
using Weft.Cluster.Persistence;
using Weft.Cluster.Sessions;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Cluster.Tests.Sessions;

/// <summary>
/// One session on its own, with probes standing in for the tailnet, machine index and device
/// regions (and for the device's entity), so that the order in which their answers arrive, and when
/// the entity goes away, are the test's to choose.
/// </summary>
public class SessionActorTests : Akka.TestKit.Xunit2.TestKit
{
    private const string TailnetId = "tn_sessiontests";
    private static readonly TimeSpan ReadLimit = TimeSpan.FromSeconds(10);
    private readonly TestProbe _directory;
    private readonly TestProbe _tailnets;
    private readonly TestProbe _devices;
    private readonly TestProbe _machines;
    private readonly Curve25519PrivateKey _coordinatorKey = Curve25519PrivateKey.Generate();
    private readonly Curve25519PrivateKey _machineKey = Curve25519PrivateKey.Generate();
    private readonly Curve25519PrivateKey _nodeKey = Curve25519PrivateKey.Generate();
    private readonly AgentStreamQueue _toAgent = new(frames: 100_000);
    private readonly InboundQueue _inbound = new(64);

    public SessionActorTests() : base(TestActorSystems.WithWeftSerialization)
    {
        _directory = CreateTestProbe("directory");
        _tailnets = CreateTestProbe("tailnets");
        _devices = CreateTestProbe("devices");
        _machines = CreateTestProbe("machines");
    }

    private IActorRef StartSession(Weft.Cluster.Relays.RelayTicketIssuer? relays = null, TimeProvider? clock = null, TimeSpan? keepAlive = null,
        AgentStreamQueue? toAgent = null)
    {
        // Keepalives and re-attaches every minute (unless a test asks): none falls inside a test.
        var services = new SessionServices(_directory.Ref, _tailnets.Ref, _devices.Ref, _machines.Ref, new TailnetAffinity(100),
            _coordinatorKey, clock ?? TimeProvider.System, new ControlAdmission(new ControlSettings(), TimeProvider.System),
            TimeSpan.FromMinutes(1), keepAlive ?? TimeSpan.FromMinutes(1)) { Relays = relays };
        return Sys.ActorOf(SessionActor.PropsFor(new MachineKey(_machineKey.PublicKey), toAgent ?? _toAgent, services));
    }

    private void FromAgent(IActorRef session, ClientMessage message)
    {
        Assert.True(_inbound.TryAdd());
        session.Tell(new ClientFrameArrived(message, _inbound));
    }

    private ServerMessage NextToAgent()
    {
        using var limit = new CancellationTokenSource(ReadLimit);
        return ServerMessage.Parser.ParseFrom(_toAgent.ReadAsync(limit.Token).AsTask().GetAwaiter().GetResult());
    }

    /// <summary>Everything the agent is sent until the session completes its stream (which it must, within the read limit).</summary>
    private List<ServerMessage> RestOfStream()
    {
        using var limit = new CancellationTokenSource(ReadLimit);
        var messages = new List<ServerMessage>();
        var reading = Task.Run(async () =>
        {
            await foreach (var bytes in _toAgent.ReadAllAsync(limit.Token)) messages.Add(ServerMessage.Parser.ParseFrom(bytes));
        });
        reading.GetAwaiter().GetResult();
        return messages;
    }

    private DeviceEntry Device(string deviceId, DeviceStatus status, DateTimeOffset? keyExpiry = null) =>
        new(deviceId, _machineKey.PublicKey.ToHex(), _nodeKey.PublicKey.ToHex(), "", "laptop", "laptop", "linux", null, [],
            "100.64.0.7", "fd7a:115c:a1e0::7", [], 0, keyExpiry, false, status, DateTimeOffset.UtcNow, null, "keyid23456");

    /// <summary>Registers with an auth key, each region answering in turn, and returns the registered session and its device id.</summary>
    private (IActorRef Session, string DeviceId) Registered()
    {
        var session = StartSession();
        FromAgent(session, RegisterWithAuthKey());
        return (session, AnswerRegistration());
    }

    private ClientMessage RegisterWithAuthKey() => new()
    {
        Register = new RegisterRequest
        {
            NodeKey = ByteString.CopyFrom(_nodeKey.PublicKey.ToArray()),
            NodeKeyProof = ByteString.CopyFrom(NodeKeyProof.Create(_nodeKey, _coordinatorKey.PublicKey, _machineKey.PublicKey)),
            AuthKey = AuthKeyToken.Generate(TailnetId).ToString(),
            Hostname = "laptop",
            Os = "linux",
        },
    };

    /// <summary>
    /// Answers a registration's asks in turn, as the regions do for a machine with no device yet (the tailnet gives
    /// it <paramref name="deviceId"/>, or the id the session proposed), and returns the device id the agent is told.
    /// <paramref name="whileLookingUp"/> runs before the machine index answers.
    /// </summary>
    private string AnswerRegistration(string? deviceId = null, Action? whileLookingUp = null, DateTimeOffset? keyExpiry = null)
    {
        _machines.ExpectMsg<LookupMachine>();
        whileLookingUp?.Invoke();
        _machines.Reply(Rejection.NotFound("this machine has no device yet"));
        var register = _tailnets.ExpectMsg<RegisterDevice>();
        deviceId ??= register.NewDeviceId;
        _tailnets.Reply(new DeviceRegistration(TailnetId, Device(deviceId, DeviceStatus.Active, keyExpiry)));
        _machines.ExpectMsg<BindMachine>();
        _machines.Reply(new MachineBinding(_machineKey.PublicKey.ToHex(), TailnetId, deviceId));
        _devices.ExpectMsg<InitializeDevice>();
        _devices.Reply(new DeviceReady(deviceId, 1));
        var result = NextToAgent();
        Assert.Equal(ServerMessage.BodyOneofCase.RegisterResult, result.BodyCase);
        Assert.Equal(RegisterResult.Types.Status.Authorized, result.RegisterResult.Status);
        Assert.Equal(deviceId, result.RegisterResult.DeviceId);
        return deviceId;
    }

    // A logout expires the device, and expiring the device ends its session through the device's
    // entity: in a cluster that end can come before the tailnet's answer to the logout, or after it.

    [Fact]
    public void An_end_that_overtakes_the_answer_to_a_logout_waits_for_it_and_the_agent_hears_it_is_logged_out_first()
    {
        var (session, deviceId) = Registered();
        Watch(session);

        FromAgent(session, new ClientMessage { Logout = new Logout() });
        var expire = _tailnets.ExpectMsg<ExpireDevice>();
        Assert.Equal(deviceId, expire.DeviceId);
        var asker = _tailnets.LastSender;

        // The device's entity ends the session before the tailnet's answer is back.
        session.Tell(new SessionEnded(ControlErrorCodes.DeviceExpired, "this device logged out"));
        asker.Tell(new DeviceInfo(Device(deviceId, DeviceStatus.Expired), false));

        var stream = RestOfStream();
        var loggedOut = stream.FindIndex(m => m.BodyCase == ServerMessage.BodyOneofCase.LoggedOut);
        var ended = stream.FindIndex(m => m.BodyCase == ServerMessage.BodyOneofCase.Error && m.Error.Code == ControlErrorCodes.DeviceExpired);
        Assert.True(loggedOut >= 0, "the agent was never told it is logged out: " + string.Join(", ", stream.Select(m => m.BodyCase)));
        Assert.True(ended > loggedOut, "the session's end must follow the logout's answer: " + string.Join(", ", stream.Select(m => m.BodyCase)));
        ExpectTerminated(session);
    }

    [Fact]
    public void A_refused_logout_is_reported_before_an_end_that_came_meanwhile_closes_the_stream()
    {
        var (session, _) = Registered();
        Watch(session);

        FromAgent(session, new ClientMessage { Logout = new Logout() });
        _tailnets.ExpectMsg<ExpireDevice>();
        var asker = _tailnets.LastSender;
        session.Tell(new SessionEnded(ControlErrorCodes.DeviceDeleted, "this device was deleted from the tailnet"));
        asker.Tell(Rejection.NotFound("no such device"));

        var stream = RestOfStream();
        Assert.Equal(
            [Contracts.Admin.ApiErrorCodes.NotFound, ControlErrorCodes.DeviceDeleted],
            stream.Where(m => m.BodyCase == ServerMessage.BodyOneofCase.Error).Select(m => m.Error.Code));
        Assert.DoesNotContain(stream, m => m.BodyCase == ServerMessage.BodyOneofCase.LoggedOut);
        ExpectTerminated(session);
    }

    [Fact]
    public void Without_a_logout_in_flight_an_end_closes_the_stream_at_once()
    {
        var (session, _) = Registered();
        Watch(session);

        session.Tell(new SessionEnded(ControlErrorCodes.DeviceDeleted, "this device was deleted from the tailnet"));

        var stream = RestOfStream();
        var only = Assert.Single(stream);
        Assert.Equal(ControlErrorCodes.DeviceDeleted, only.Error.Code);
        ExpectTerminated(session);
    }

    /// <summary>The next relay ticket the agent is sent (other messages skipped).</summary>
    private RelayUpdate NextTicket()
    {
        while (true)
            if (NextToAgent() is { BodyCase: ServerMessage.BodyOneofCase.Relay } message) return message.Relay;
    }

    [Fact]
    public void A_ticket_renewal_takes_the_key_expiry_from_the_tailnet_so_a_device_tagged_since_it_registered_keeps_relay_tickets_past_its_old_expiry()
    {
        // Tickets of 12 s, renewed at half their life; the device's key expired 14 s after it registered.
        using var issuer = ShortTicketIssuer();
        var oldExpiry = DateTimeOffset.UtcNow.AddSeconds(14);
        var session = StartSession(issuer);
        FromAgent(session, RegisterWithAuthKey());
        var deviceId = AnswerRegistration(keyExpiry: oldExpiry);
        FromAgent(session, new ClientMessage { Subscribe = new Subscribe { LastVersion = 0 } });
        _devices.ExpectMsg<AttachSession>();
        var first = NextTicket();
        Assert.NotNull(first.Map);
        Assert.True(first.TicketExpiry.ToDateTimeOffset() <= oldExpiry);

        // The device was tagged meanwhile (tagged devices do not expire); the session heard nothing of it.
        var asked = _tailnets.ExpectMsg<GetDevice>(TimeSpan.FromSeconds(10));
        Assert.Equal(deviceId, asked.DeviceId);
        _tailnets.Reply(new DeviceInfo(Device(deviceId, DeviceStatus.Active, keyExpiry: null), true));

        var renewed = NextTicket();
        Assert.True(renewed.TicketExpiry.ToDateTimeOffset() > oldExpiry, $"the renewed ticket runs to {renewed.TicketExpiry}, past the lifted expiry {oldExpiry}");
        Assert.True(RelayTicket.TryReadNodeKey(renewed.Ticket.ToByteArray(), out var named) && named == _nodeKey.PublicKey);
        // And renewals go on: the next one asks again.
        _tailnets.ExpectMsg<GetDevice>(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void A_session_whose_agent_does_not_read_fast_enough_ends_its_stream_and_loses_no_frame_without_a_word()
    {
        // The stream's real queue: an agent on a bad link (or one swallowing a full map) leaves it full. Dropping the
        // frame while answering "queued" lost deltas, node-key rotations and tickets for as long as the stream lived,
        // and the session counted each as delivered. Ending the stream instead makes the agent resume from its version.
        var queue = new AgentStreamQueue(frames: 4);
        var session = StartSession(toAgent: queue);
        Watch(session);
        for (var version = 1UL; version <= 5; version++)
            session.Tell(new DeliverToAgent(new ServerMessage { Ping = new Ping { Nonce = version } }.ToByteArray(), version));
        ExpectTerminated(session);

        // The stream is abandoned: its writer stops at once instead of waiting on an agent that does not read.
        AwaitCondition(() => queue.Abandoned.IsCancellationRequested, TimeSpan.FromSeconds(5));
        var queued = new List<byte[]>();
        while (queue.TryRead(out var frame)) queued.Add(frame);
        Assert.Equal(4, queued.Count);
        Assert.True(queue.Completion.IsCompleted, "the stream is told to end");
    }

    [Fact]
    public void A_stream_its_reader_ended_is_not_taken_for_a_slow_agent_and_the_reason_queued_for_the_agent_still_goes()
    {
        // The stream's reader ends it (a malformed frame, too many messages waiting) with a reason queued for the agent,
        // and completes the queue; the session sends once more before it hears. That is not an agent too slow to read.
        var queue = new AgentStreamQueue(frames: 100);
        var session = StartSession(toAgent: queue);
        Watch(session);
        Assert.True(queue.TryQueue(new ServerMessage { Error = new Weft.Contracts.Control.Error { Code = ControlErrorCodes.FrameMalformed } }.ToByteArray()));
        queue.Complete();
        session.Tell(new DeliverToAgent(new ServerMessage { Ping = new Ping { Nonce = 1 } }.ToByteArray(), 1));
        ExpectTerminated(session);
        Assert.False(queue.Abandoned.IsCancellationRequested, "the stream was abandoned, dropping the reason queued for the agent");
        Assert.True(queue.TryRead(out var reason));
        Assert.Equal(ControlErrorCodes.FrameMalformed, ServerMessage.Parser.ParseFrom(reason).Error.Code);
    }

    [Fact]
    public void A_session_ends_its_stream_when_what_its_agent_has_not_read_passes_the_byte_limit_however_few_the_frames()
    {
        // Two full maps of a big tailnet queued for an agent that stopped reading (or withholds its flow-control
        // window) are megabytes: counted in frames alone, a thousand of them fit, and every later Subscribe added one.
        var queue = new AgentStreamQueue(frames: 1000, bytes: 10_000);
        var session = StartSession(toAgent: queue);
        Watch(session);
        var map = new ServerMessage { Error = new Weft.Contracts.Control.Error { Code = "x", Message = new string('m', 4_000) } }.ToByteArray();
        for (var version = 1UL; version <= 3; version++) session.Tell(new DeliverToAgent(map, version));
        ExpectTerminated(session);
        AwaitCondition(() => queue.Abandoned.IsCancellationRequested, TimeSpan.FromSeconds(5));
        var queued = 0;
        while (queue.TryRead(out _)) queued++;
        Assert.Equal(2, queued);

        // A frame bigger than the whole limit still goes, alone: the limit never refuses a map outright.
        var roomy = new AgentStreamQueue(frames: 10, bytes: 1_000);
        Assert.True(roomy.TryQueue(map));
        Assert.False(roomy.TryQueue(new byte[10]));
        Assert.True(roomy.TryRead(out _));
        Assert.True(roomy.TryQueue(new byte[10]));
    }

    [Fact]
    public async Task An_ended_sessions_last_frames_get_a_bounded_time_to_reach_an_agent_that_no_longer_reads()
    {
        var queue = new AgentStreamQueue(drainLimit: TimeSpan.FromMilliseconds(300));
        Assert.True(queue.TryQueue([1, 2, 3]));
        queue.Complete();
        Assert.False(queue.Abandoned.IsCancellationRequested, "the last words are sent first");
        // Nobody reads: the drain limit ends the stream anyway.
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.True(queue.Abandoned.IsCancellationRequested, "an agent that stopped reading held its stream's queue for good");
    }

    [Fact]
    public void A_registration_that_meets_an_internal_error_tells_the_agent_to_come_back_later_and_asks_nothing_again()
    {
        var session = StartSession();
        FromAgent(session, RegisterWithAuthKey());
        _machines.ExpectMsg<LookupMachine>();
        _machines.Reply(Rejection.NotFound("this machine has no device yet"));
        _tailnets.ExpectMsg<RegisterDevice>();
        _tailnets.Reply(new Rejection(Contracts.Admin.ApiErrorCodes.Internal, "internal error handling RegisterDevice (NullReferenceException); nothing was written"));

        var result = NextToAgent().RegisterResult;
        Assert.Equal(ControlErrorCodes.Unavailable, result.RefusalCode); // not a refusal of the device: the agent backs off and comes back
        Assert.True(result.RetryAfterMs > 0);
        _tailnets.ExpectNoMsg(TimeSpan.FromMilliseconds(600)); // the same defect is not run again from here
    }

    /// <summary>Tickets that last 12 s, so that a renewal comes within a test.</summary>
    private static Weft.Cluster.Relays.RelayTicketIssuer ShortTicketIssuer() =>
        new(new Weft.Cluster.Relays.RelaySettings { TicketLifetimeMinutes = 0.2 },
            Weft.Cluster.Hosting.ClusterSecret.FromText(Convert.ToBase64String(new byte[32]), "the test"));

    /// <summary>A session registered and subscribed, its first ticket sent, and its renewal asking the tailnet for the device (answer it next).</summary>
    private string SubscribedUntilTheTicketsRenewal(Weft.Cluster.Relays.RelayTicketIssuer issuer)
    {
        var session = StartSession(issuer);
        FromAgent(session, RegisterWithAuthKey());
        var deviceId = AnswerRegistration(keyExpiry: DateTimeOffset.UtcNow.AddDays(1));
        FromAgent(session, new ClientMessage { Subscribe = new Subscribe { LastVersion = 0 } });
        _devices.ExpectMsg<AttachSession>();
        NextTicket();
        Assert.Equal(deviceId, _tailnets.ExpectMsg<GetDevice>(TimeSpan.FromSeconds(10)).DeviceId);
        return deviceId;
    }

    [Fact]
    public void A_ticket_renewal_for_a_device_its_tailnet_no_longer_has_ends_the_session_instead_of_issuing_a_ticket()
    {
        // The device was deleted and the end of its session was lost on the way: the renewal's question finds out.
        using var issuer = ShortTicketIssuer();
        var deviceId = SubscribedUntilTheTicketsRenewal(issuer);
        _tailnets.Reply(Rejection.NotFound($"device {deviceId} does not exist"));

        var rest = RestOfStream();
        Assert.DoesNotContain(rest, m => m.BodyCase == ServerMessage.BodyOneofCase.Relay);
        Assert.Equal(ControlErrorCodes.DeviceDeleted, Assert.Single(rest, m => m.BodyCase == ServerMessage.BodyOneofCase.Error).Error.Code);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_ticket_renewal_for_a_device_that_expired_ends_the_session_instead_of_issuing_a_ticket(bool byTheClock)
    {
        // Expired by an admin (or by its key's time, before the sweep marked it), and the end of its session not here yet.
        using var issuer = ShortTicketIssuer();
        var deviceId = SubscribedUntilTheTicketsRenewal(issuer);
        _tailnets.Reply(new DeviceInfo(byTheClock
            ? Device(deviceId, DeviceStatus.Active, keyExpiry: DateTimeOffset.UtcNow.AddSeconds(-1))
            : Device(deviceId, DeviceStatus.Expired, keyExpiry: DateTimeOffset.UtcNow.AddDays(1)), true));

        var rest = RestOfStream();
        Assert.DoesNotContain(rest, m => m.BodyCase == ServerMessage.BodyOneofCase.Relay);
        Assert.Equal(ControlErrorCodes.DeviceExpired, Assert.Single(rest, m => m.BodyCase == ServerMessage.BodyOneofCase.Error).Error.Code);
    }

    [Fact]
    public void When_the_device_entity_stops_the_session_attaches_again_at_once_with_the_last_version_delivered_and_the_agents_endpoints()
    {
        var (session, deviceId) = Registered();
        FromAgent(session, new ClientMessage { Subscribe = new Subscribe { LastVersion = 0 } });
        var first = _devices.ExpectMsg<AttachSession>();
        Assert.Equal((ulong)0, first.LastVersion);
        Assert.Null(first.Endpoints);

        // The entity (an incarnation on some node) takes the session and streams to it.
        var entity = CreateTestProbe("device-entity");
        entity.Send(session, new SessionAttached(deviceId, 0));
        entity.Send(session, new DeliverToAgent(new ServerMessage { Netmap = new NetMap { Version = 7 } }.ToByteArray(), 7));
        Assert.Equal((ulong)7, NextToAgent().Netmap.Version);
        FromAgent(session, new ClientMessage { Endpoints = new EndpointUpdate { Endpoints = { "198.18.0.7:41641" }, HomeRelay = 1 } });
        var report = _devices.ExpectMsg<ReportEndpoints>();
        _devices.Reply(new DeviceInfo(Device(deviceId, DeviceStatus.Active), true));

        // It stops: passivated, handed off in a rebalance, or lost with its node. Nothing else tells the session.
        Sys.Stop(entity.Ref);

        var again = _devices.ExpectMsg<AttachSession>();
        Assert.Equal(deviceId, again.DeviceId);
        Assert.Equal(session, again.Session);
        Assert.Equal((ulong)7, again.LastVersion); // the next incarnation resumes after what the agent holds
        Assert.Equal(report.Report, again.Endpoints); // and learns the agent's endpoints, which are not stored
        Assert.Equal(first.StartedAt, again.StartedAt);
        Assert.Equal(0, again.RepeatedAt); // a new incarnation has served nothing: it must start the stream
    }

    [Fact]
    public void An_attach_that_no_entity_answers_is_sent_again_and_still_asks_the_entity_to_confirm_the_agents_version()
    {
        // Right after a node is lost, the region can still route the device's shard to the dead node,
        // and the attach is lost with it.
        var (session, deviceId) = Registered();
        FromAgent(session, new ClientMessage { Subscribe = new Subscribe { LastVersion = 12 } });
        var lost = _devices.ExpectMsg<AttachSession>();
        Assert.True(lost.Confirm);
        Assert.Equal(0, lost.RepeatedAt); // the agent's subscribe

        var again = _devices.ExpectMsg<AttachSession>();
        Assert.Equal(deviceId, again.DeviceId);
        Assert.Equal((ulong)12, again.LastVersion);
        Assert.True(again.Confirm);
        Assert.NotEqual(0, again.RepeatedAt); // the session's own: an entity that got the first one sends nothing again, for a while

        // Once an entity answers, the session stops asking.
        CreateTestProbe("device-entity").Send(session, new SessionAttached(deviceId, 12));
        _devices.ExpectNoMsg(TimeSpan.FromSeconds(1.5));
    }

    [Fact]
    public void Endpoints_reported_right_after_the_subscribe_wait_for_the_entitys_version_and_outrank_what_it_holds()
    {
        // The previous session's report was stamped by a node whose clock is an hour ahead of this one's. The
        // agent reconnects here and sends its subscribe and its new endpoints back to back.
        var (session, deviceId) = Registered();
        FromAgent(session, new ClientMessage { Subscribe = new Subscribe { LastVersion = 0 } });
        _devices.ExpectMsg<AttachSession>();
        FromAgent(session, new ClientMessage { Endpoints = new EndpointUpdate { Endpoints = { "198.18.0.8:41641" } } });
        _devices.ExpectNoMsg(TimeSpan.FromMilliseconds(300)); // not versioned yet: the entity has not said what it holds

        var heldByEntity = (DateTimeOffset.UtcNow + TimeSpan.FromHours(1)).UtcTicks;
        CreateTestProbe("device-entity").Send(session, new SessionAttached(deviceId, 0, heldByEntity));
        var report = _devices.ExpectMsg<ReportEndpoints>();
        Assert.Equal(["198.18.0.8:41641"], report.Report.Endpoints.ToArray());
        Assert.True(report.Report.Version > heldByEntity, "the new report is older than the one the entity holds: the peers keep the old endpoints");
    }

    [Fact]
    public void Endpoints_are_passed_on_in_their_canonical_form_each_once_whatever_padding_the_agent_sent()
    {
        // Every peer and every full map carries this text: zero-padded ports and long-form addresses parse, and would
        // otherwise travel as sent (32 of them, kilobytes per device, to every peer of the tailnet).
        var (session, _) = Registered();
        FromAgent(session, new ClientMessage
        {
            Endpoints = new EndpointUpdate { Endpoints = { "198.18.0.8:0000041641", "198.18.0.8:41641", "[fd7a:115c:a1e0:0000:0000:0000:0000:0007]:00443" } },
        });
        var report = _devices.ExpectMsg<ReportEndpoints>();
        Assert.Equal(["198.18.0.8:41641", "[fd7a:115c:a1e0::7]:443"], report.Report.Endpoints.ToArray());
    }

    [Fact]
    public void An_endpoints_report_that_the_tailnet_does_not_confirm_is_sent_again_until_it_does()
    {
        // A tailnet entity whose node just died loses what is sent to it until its shard has moved.
        var (session, deviceId) = Registered();
        FromAgent(session, new ClientMessage { Endpoints = new EndpointUpdate { Endpoints = { "198.18.0.9:41641" } } });
        var unanswered = _devices.ExpectMsg<ReportEndpoints>();

        var afterSilence = _devices.ExpectMsg<ReportEndpoints>(TimeSpan.FromSeconds(10));
        Assert.Equal(unanswered.Report, afterSilence.Report);
        _devices.Reply(Rejection.Unavailable("storage is away"));

        var afterRefusal = _devices.ExpectMsg<ReportEndpoints>(TimeSpan.FromSeconds(10));
        Assert.Equal(unanswered.Report, afterRefusal.Report);
        _devices.Reply(new DeviceInfo(Device(deviceId, DeviceStatus.Active), true));
        // Past the confirm timeout (3 s) and the resend delay: nothing more is sent.
        _devices.ExpectNoMsg(TimeSpan.FromSeconds(4));
    }

    [Fact]
    public void A_report_refused_while_the_agent_registers_again_is_still_sent_until_confirmed()
    {
        var (session, deviceId) = Registered();
        FromAgent(session, new ClientMessage { Endpoints = new EndpointUpdate { Endpoints = { "198.18.0.9:41641" } } });
        var unanswered = _devices.ExpectMsg<ReportEndpoints>();

        // The agent registers again on the same stream (a new login). While the machine index has not answered yet,
        // the report's answer comes: storage is away, send it again. Nothing goes out while the session registers.
        FromAgent(session, RegisterWithAuthKey());
        AnswerRegistration(deviceId, whileLookingUp: () =>
        {
            _devices.Reply(Rejection.Unavailable("storage is away"));
            _devices.ExpectNoMsg(TimeSpan.FromMilliseconds(500));
        });

        // Registered again as the same device: the report is sent again, until the device's entity confirms it.
        var again = (ReportEndpoints)_devices.FishForMessage(m => m is ReportEndpoints, TimeSpan.FromSeconds(10));
        Assert.Equal(unanswered.Report, again.Report);
        _devices.Reply(new DeviceInfo(Device(deviceId, DeviceStatus.Active), true));
    }

    [Fact]
    public void A_rotation_the_cluster_could_not_confirm_ends_the_stream_so_the_agent_learns_which_key_stands_and_a_refused_one_does_not()
    {
        var (session, _) = Registered();
        Watch(session);
        using var next = Curve25519PrivateKey.Generate();
        var rotate = new ClientMessage
        {
            RotateNodeKey = new RotateNodeKey
            {
                OldNodeKey = ByteString.CopyFrom(_nodeKey.PublicKey.ToArray()),
                NewNodeKey = ByteString.CopyFrom(next.PublicKey.ToArray()),
                OldKeyProof = ByteString.CopyFrom(NodeKeyProof.Create(_nodeKey, _coordinatorKey.PublicKey, _machineKey.PublicKey)),
                NewKeyProof = ByteString.CopyFrom(NodeKeyProof.Create(next, _coordinatorKey.PublicKey, _machineKey.PublicKey)),
            },
        };

        // Refused (the new key is another device's): the agent is told, forgets its next key, and keeps its stream.
        FromAgent(session, rotate);
        _tailnets.ExpectMsg<RotateDeviceNodeKey>();
        _tailnets.Reply(new Rejection(ControlErrorCodes.NodeKeyInUse, "that node key belongs to another device"));
        Assert.Equal(ControlErrorCodes.NodeKeyInUse, NextToAgent().Error.Code);
        FromAgent(session, new ClientMessage { Ping = new Ping { Nonce = 7 } });
        Assert.Equal(7UL, NextToAgent().Pong.Nonce);

        // Not confirmed (the journal is away, or the ask timed out while the shard moved): the rotation may
        // yet be applied, so the stream ends and the agent's reconnect finds out which key stands.
        FromAgent(session, rotate);
        _tailnets.ExpectMsg<RotateDeviceNodeKey>();
        _tailnets.Reply(Rejection.Unavailable("storage is away"));
        var rest = RestOfStream();
        Assert.Equal(ControlErrorCodes.Unavailable, Assert.Single(rest).Error.Code);
        ExpectTerminated(session);
    }

    [Fact]
    public async Task A_wall_clock_stepped_forward_does_not_end_a_stream_as_silent()
    {
        // Keepalives every 200 ms: an agent heard from for none of 600 ms is gone.
        var clock = new SteppedWallClock();
        var session = StartSession(clock: clock, keepAlive: TimeSpan.FromMilliseconds(200));
        Watch(session);
        FromAgent(session, new ClientMessage { Ping = new Ping { Nonce = 1 } });
        Assert.Equal(1UL, NextToAgent().Pong.Nonce);

        // The wall clock steps ten minutes forward (a VM resumed, NTP): 300 ms later, by any real measure,
        // the agent has been quiet for less than the limit. It is asked whether it is there, and its stream stays.
        clock.Step(TimeSpan.FromMinutes(10));
        await Task.Delay(300);
        FromAgent(session, new ClientMessage { Ping = new Ping { Nonce = 2 } });
        var sent = new List<ServerMessage>();
        while (sent.LastOrDefault()?.Pong?.Nonce != 2UL) sent.Add(NextToAgent());
        Assert.DoesNotContain(sent, m => m.BodyCase == ServerMessage.BodyOneofCase.Error);
        ExpectNoMsg(TimeSpan.FromMilliseconds(100)); // no Terminated
    }
}
