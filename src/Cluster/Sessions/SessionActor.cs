using Weft.Cluster.Telemetry;
using System.Net;
using Akka.Actor;
using Akka.Event;
using Google.Protobuf;
using Weft.Cluster.Control;
using Weft.Cluster.Devices;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;

namespace Weft.Cluster.Sessions;

// The SessionActor's protocol (local to the node that holds the stream; never crosses nodes).

/// <summary>A client message that arrived on the stream, already opened and parsed; the session tells <paramref name="Inbound"/> once it has handled it.</summary>
public sealed record ClientFrameArrived(ClientMessage Message, InboundQueue Inbound);

/// <summary>
/// Counts the messages of one stream that the session has not handled yet (in its mailbox, or put
/// aside while it registers). The stream reader stops at the limit: an agent that sends faster than
/// its session works cannot make the node buffer without end.
/// </summary>
public sealed class InboundQueue(int capacity)
{
    private int _waiting;

    public int Capacity => capacity;

    /// <summary>False when the queue is full: the caller ends the stream.</summary>
    public bool TryAdd()
    {
        if (Interlocked.Increment(ref _waiting) <= capacity) return true;
        Interlocked.Decrement(ref _waiting);
        return false;
    }

    public void Handled() => Interlocked.Decrement(ref _waiting);
}

/// <summary>
/// The stream is gone (client closed, network failed): the session stops. It can arrive twice (the
/// stream's end, and the stream's token the session listens on), so the second is not a dead letter worth a line.
/// </summary>
public sealed record StreamClosed(string Reason) : IDeadLetterSuppression;

/// <summary>This node is shutting down: tell the agent to reconnect elsewhere, then end the stream.</summary>
public sealed record MoveAgent(string Reason, TimeSpan After);

/// <summary>What a session needs from the node it runs on.</summary>
public sealed record SessionServices(
    IActorRef Directory, IActorRef Tailnets, IActorRef Devices, IActorRef Machines, Tailnets.TailnetAffinity Affinity,
    Curve25519PrivateKey CoordinatorKey, TimeProvider Clock, ControlAdmission Admission, TimeSpan ReattachInterval, TimeSpan KeepAliveInterval)
{
    /// <summary>Signs the relay tickets handed to agents (null: no relays; agents then connect directly only).</summary>
    public Relays.RelayTicketIssuer? Relays { get; init; }

    /// <summary>Makes the login links of interactive login (null: no interactive login; devices without a key wait for approval).</summary>
    public Identity.LoginLinks? Logins { get; init; }

    /// <summary>An agent heard from for none of this long (three keepalive intervals) is gone.</summary>
    public TimeSpan SilenceLimit => 3 * KeepAliveInterval;

    /// <summary>A stream with no device ends when it sends no registration for this long (<see cref="Control.ControlSettings.UnregisteredStreamSeconds"/>).</summary>
    public TimeSpan UnregisteredLimit { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Streams one machine key may hold open on this node; a newer one ends the oldest (<see cref="Control.ControlSettings.StreamsPerMachine"/>).</summary>
    public int StreamsPerMachine { get; init; } = 4;
}

/// <summary>
/// One agent's stream, on whichever node it landed: registration, then the bridge between the
/// sealed stream and the device's entity (which may live on another node). It keeps the stream
/// alive with pings and hands the writer loop only what the agent must see; a client that cannot
/// keep up is disconnected (it resumes from its last version on reconnect).
/// <para>
/// States (<c>Become</c>): unregistered, registering (the asks run as a task whose result is piped
/// back, so deliveries and pings never wait behind them), registered. Once the agent subscribes,
/// the session owns the link to the device entity and re-asserts it: it re-attaches through the
/// shard region on a timer (which also keeps the entity awake and is the device's presence
/// heartbeat), and at once when the entity incarnation it watches terminates (passivated, moved
/// in a rebalance, lost with its node). Each attach carries the last version this session
/// delivered, so the entity resumes the stream or sends a full map — never nothing.
/// </para>
/// </summary>
public sealed class SessionActor : UntypedActor, IWithTimers, IWithUnboundedStash
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(10);
    /// <summary>How long a report (endpoints, host info, routes) waits for the tailnet's answer before it is sent again.</summary>
    private static readonly TimeSpan ReportConfirmTimeout = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan ReportResendDelay = TimeSpan.FromMilliseconds(500);
    private readonly Dictionary<Type, (ITailnetDeviceCommand Command, int Attempt)> _unconfirmed = new();
    private int _reportAttempts;
    /// <summary>The agent's latest endpoints, carried by every attach: a new incarnation of the device's entity learns them so (see <see cref="DeviceActor"/>).</summary>
    private UpdateDeviceEndpoints? _reportedEndpoints;
    private long _reportVersion;
    /// <summary>Whether the device's entity has told this session the version of the endpoints it holds (its first <see cref="SessionAttached"/>).</summary>
    private bool _entityVersionHeard;
    /// <summary>Endpoints the agent reported while that was not known yet: versioned once it is.</summary>
    private EndpointUpdate? _endpointsAwaitingVersion;
    /// <summary>
    /// An attach that is not answered this soon is sent again: right after a node is lost, the region
    /// may still route the entity's shard to the dead node (the message is lost) until the shard is
    /// allocated elsewhere, a second or two later.
    /// </summary>
    private static readonly TimeSpan AttachRetry = TimeSpan.FromSeconds(1);

    private readonly MachineKey _machine;
    private readonly System.Net.IPAddress? _remoteAddress;
    private readonly AgentStreamQueue _outbound;
    private readonly SessionServices _services;
    private readonly CancellationToken _streamEnded;
    private CancellationTokenRegistration _streamEndedRegistration;
    // When this stream opened: of two sessions of one device, the device's entity keeps the later (see AttachSession).
    private readonly long _startedAt;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private string? _deviceId;
    private string? _tailnetId;
    /// <summary>When the agent was last heard from, and last sent to: monotonic timestamps, so that a wall clock stepped forward does not close every stream as silent.</summary>
    private long _lastHeard;
    private long _lastSent;
    private ulong _pingNonce;
    private bool _subscribed;
    private ulong _lastDelivered;
    private IActorRef? _deviceEntity;
    private bool _attachAnswered = true;
    private bool _attachConfirm;
    private bool _closing;
    // A logout asked of the tailnet and not answered yet, and the end of the session that came meanwhile:
    // expiring the device ends its session through the device's entity, which can overtake the answer,
    // and the agent must hear that it is logged out before its stream ends.
    private bool _loggingOut;
    private SessionEnded? _endAfterLogout;
    // The node key the relays must see in this device's ticket, and the key's expiry (a ticket never outlives it).
    private Curve25519PublicKey? _registeringKey;
    private Curve25519PublicKey? _nodeKey;
    private DateTimeOffset? _keyExpiry;
    /// <summary>The latest request of each kind beyond the device's budget (<see cref="ControlAdmission.TryAdmitFromDevice"/>), handled when it allows.</summary>
    private readonly Dictionary<DeviceRequest, ClientMessage> _held = new();
    private bool _heldLogged;
    /// <summary>Since when this stream has had no device and no registration waiting for approval or a login (monotonic).</summary>
    private long _unregisteredSince;
    private bool _registering;
    private readonly string _machineHex;

    /// <param name="streamEnded">
    /// Cancelled when the stream ends, whenever that is. A session the guardian starts after its stream
    /// gave up waiting for it (a reconnect storm) hears it at once, instead of living out its silence limit.
    /// </param>
    public SessionActor(MachineKey machine, AgentStreamQueue outbound, SessionServices services, System.Net.IPAddress? remoteAddress = null,
        CancellationToken streamEnded = default)
    {
        _machine = machine;
        _machineHex = machine.Key.ToHex();
        _streamEnded = streamEnded;
        _remoteAddress = remoteAddress;
        _outbound = outbound;
        _services = services;
        _lastHeard = services.Clock.GetTimestamp();
        _unregisteredSince = _lastHeard;
        _startedAt = services.Clock.GetUtcNow().UtcTicks;
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public IStash Stash { get; set; } = null!;

    public static Props PropsFor(MachineKey machine, AgentStreamQueue outbound, SessionServices services, System.Net.IPAddress? remoteAddress = null,
        CancellationToken streamEnded = default) =>
        Props.Create(() => new SessionActor(machine, outbound, services, remoteAddress, streamEnded)).WithMailbox(Hosting.CompactMailbox.Id);

    protected override void PreStart()
    {
        // Checked twice per interval, so a ping goes out at most one and a half intervals after the agent was last heard.
        Timers.StartPeriodicTimer("keepalive", KeepAlive.Instance, _services.KeepAliveInterval / 2);
        // Runs at once if the stream has already ended.
        _streamEndedRegistration = _streamEnded.Register(static self => ((IActorRef)self!).Tell(new StreamClosed("the stream ended")), Self);
    }

    /// <summary>However the session ends (closed, replaced, crashed), the stream ends with it and the agent reconnects.</summary>
    protected override void PostStop()
    {
        _streamEndedRegistration.Dispose();
        _outbound.Complete();
        if (_tailnetId is not null) CoordinatorMetrics.AgentsConnected.Add(-1, CoordinatorMetrics.Tailnet(_tailnetId));
    }

    // ------------------------------------------------------------------ states

    // Each state is a plain switch: a ReceiveActor builds a handler per message type for every
    // session at every Become, about a kilobyte per connected device, and matches each delivery
    // through them.

    protected override void OnReceive(object message) => Unregistered(message);

    private void Unregistered(object message)
    {
        if (Always(message)) return;
        if (message is not ClientFrameArrived arrived)
        {
            Unhandled(message);
            return;
        }
        Heard();
        arrived.Inbound.Handled();
        switch (arrived.Message.BodyCase)
        {
            case ClientMessage.BodyOneofCase.Register:
                StartRegistration(arrived.Message.Register);
                break;
            case ClientMessage.BodyOneofCase.Ping or ClientMessage.BodyOneofCase.Pong:
                OnPingPong(arrived.Message);
                break;
            case ClientMessage.BodyOneofCase.None:
                SendError(ControlErrorCodes.FrameMalformed, "empty or unknown client message");
                break;
            default:
                SendError(ControlErrorCodes.NotRegistered, "register first");
                break;
        }
    }

    private void Registering(object message)
    {
        if (Always(message)) return;
        switch (message)
        {
            case RegistrationOutcome outcome:
                OnRegistered(outcome);
                break;
            case Status.Failure failure:
                OnRegistered(DeviceRegistrar.Refuse(ControlErrorCodes.Unavailable, "registration failed: " + failure.Cause.Message, DeviceRegistrar.RetryAfterMs));
                break;
            case ClientFrameArrived arrived:
                Heard();
                if (arrived.Message.BodyCase is ClientMessage.BodyOneofCase.Ping or ClientMessage.BodyOneofCase.Pong)
                {
                    arrived.Inbound.Handled();
                    OnPingPong(arrived.Message);
                }
                else Stash.Stash(); // decided once the registration is (and counted until then)
                break;
            default:
                // The session's own timers and answers (a report's confirmation, a re-attach, a rotation's answer)
                // belong to the registered session that asked for them: dropped here, a report whose answer came
                // meanwhile would never be sent again. Handled once the registration is decided.
                Stash.Stash();
                break;
        }
    }

    private void Registered(object message)
    {
        if (Always(message)) return;
        switch (message)
        {
            case ClientFrameArrived arrived:
                Heard();
                arrived.Inbound.Handled();
                OnRegisteredMessage(arrived.Message);
                break;
            case Reattach:
                Attach(confirm: false, repeat: true);
                break;
            case AttachAgain:
                Attach(confirm: false);
                break;
            case AttachUnanswered:
                if (!_attachAnswered) Attach(_attachConfirm, repeat: true);
                break;
            case RotationAnswered answered:
                OnRotationAnswered(answered);
                break;
            case RenewRelayTicket:
                AskKeyExpiryForTicket();
                break;
            case KeyExpiryForTicket learned:
                OnKeyExpiryForTicket(learned);
                break;
            case LogoutAnswered answered:
                OnLogoutAnswered(answered);
                break;
            case TailnetAnswered answered:
                OnTailnetAnswered(answered);
                break;
            case ResendUnconfirmed resend:
                if (_unconfirmed.TryGetValue(resend.Kind, out var pending)) SendUntilConfirmed(pending.Command);
                break;
            case HandleHeld held:
                if (_held.Remove(held.Kind, out var request)) OnRegisteredMessage(request);
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    /// <summary>What every state handles (deliveries first: they are most of the traffic), the end of the stream, keepalives, a node draining.</summary>
    private bool Always(object message)
    {
        switch (message)
        {
            case DeliverToAgent deliver:
                if (deliver.Version != 0)
                {
                    _lastDelivered = deliver.Version;
                    CoordinatorMetrics.NetmapDeltasSent.Add(1, CoordinatorMetrics.Tailnet(_tailnetId));
                    CoordinatorMetrics.NetmapDeltaBytes.Add(deliver.ServerMessage.Length, CoordinatorMetrics.Tailnet(_tailnetId));
                }
                Send(deliver.ServerMessage);
                return true;
            case SessionAttached attached:
                _reportVersion = Math.Max(_reportVersion, attached.EndpointsVersion);
                _entityVersionHeard = true;
                if (_endpointsAwaitingVersion is { } waiting)
                {
                    _endpointsAwaitingVersion = null;
                    ReportEndpoints(waiting);
                }
                _attachAnswered = true;
                Timers.Cancel("attach-unanswered");
                WatchEntity(Sender);
                return true;
            case Terminated terminated:
                if (!terminated.ActorRef.Equals(_deviceEntity)) return true;
                // The entity stopped (passivated, handed off, or its node is gone): a new incarnation starts on this attach.
                _deviceEntity = null;
                Attach(confirm: false);
                return true;
            case SessionEnded ended when _loggingOut:
                _endAfterLogout ??= ended;
                return true;
            case SessionEnded ended:
                Close(ended.Code, ended.Message);
                return true;
            case StreamClosed:
                Context.Stop(Self);
                return true;
            case KeepAlive:
                OnKeepAlive();
                return true;
            case MoveAgent move:
                OnMove(move);
                return true;
            default:
                return false;
        }
    }

    // ------------------------------------------------------------------ registration

    private void StartRegistration(RegisterRequest request)
    {
        _registering = true;
        Become(Registering);
        _registeringKey = request.NodeKey.Length == 32 ? new Curve25519PublicKey(request.NodeKey.Span) : null;
        DeviceRegistrar.RegisterAsync(_services, _machine, request, _remoteAddress).PipeTo(Self);
    }

    private void OnRegistered(RegistrationOutcome outcome)
    {
        _registering = false;
        if (outcome.Accepted)
        {
            if (_deviceId is not null && _deviceId != outcome.DeviceId) ForgetDevice(); // re-registered as another device
            _deviceId = outcome.DeviceId;
            if (_tailnetId != outcome.TailnetId)
            {
                if (_tailnetId is not null) CoordinatorMetrics.AgentsConnected.Add(-1, CoordinatorMetrics.Tailnet(_tailnetId));
                CoordinatorMetrics.AgentsConnected.Add(1, CoordinatorMetrics.Tailnet(outcome.TailnetId));
            }
            _tailnetId = outcome.TailnetId;
            _nodeKey = _registeringKey;
            _keyExpiry = outcome.Result.KeyExpiry?.ToDateTimeOffset();
            Become(Registered);
        }
        else
        {
            // Waiting for an admin's approval or a person's login: the agent asks again every few seconds, and may.
            if (outcome.Result.Status == RegisterResult.Types.Status.PendingApproval) _unregisteredSince = _services.Clock.GetTimestamp();
            Become(_deviceId is null ? Unregistered : Registered);
        }
        Send(new ServerMessage { RegisterResult = outcome.Result });
        Stash.UnstashAll();
    }

    private void ForgetDevice()
    {
        if (_deviceEntity is not null) Context.Unwatch(_deviceEntity);
        _deviceEntity = null;
        _subscribed = false;
        _lastDelivered = 0;
        _attachAnswered = true;
        _entityVersionHeard = false;
        _endpointsAwaitingVersion = null;
        _unconfirmed.Clear(); // the reports of the device it was: its answers and resends now find nothing to do
        _held.Clear();
        Timers.Cancel("reattach");
        Timers.Cancel("attach-unanswered");
        Timers.Cancel("relay-ticket");
    }

    // ------------------------------------------------------------------ registered

    private void OnRegisteredMessage(ClientMessage message)
    {
        if (RequestKind(message.BodyCase) is { } kind && !Admitted(kind, message)) return;
        switch (message.BodyCase)
        {
            case ClientMessage.BodyOneofCase.Register:
                // Again, on a stream that has its device: each can be a journal write patching every peer (a new host
                // name or disco key), so it has a budget too. Refused, not held: the agent waits for its answer, and
                // what it sends after would otherwise be taken against the registration it replaces.
                if (!_services.Admission.TryAdmitFromDevice(_machineHex, DeviceRequest.Registration, out var registerAfterMs))
                {
                    Send(new ServerMessage { RegisterResult = DeviceRegistrar.Refuse(ControlErrorCodes.RateLimited,
                        "this device registers again more often than its budget allows; retry later", registerAfterMs).Result });
                    break;
                }
                StartRegistration(message.Register);
                break;
            case ClientMessage.BodyOneofCase.Subscribe:
                // Agents subscribe again to verify their version (every minute or so): the relay map and
                // ticket go out on the first subscribe of the device only; the ticket renews on its timer.
                var firstSubscribe = !_subscribed;
                _subscribed = true;
                _lastDelivered = message.Subscribe.LastVersion;
                Attach(confirm: true);
                Timers.StartPeriodicTimer("reattach", Reattach.Instance, _services.ReattachInterval);
                if (firstSubscribe) SendRelayTicket(withMap: true);
                break;
            case ClientMessage.BodyOneofCase.Endpoints:
                var update = message.Endpoints;
                if (update.Endpoints.Count > TailnetState.MaxEndpoints || update.Endpoints.Any(e => !IPEndPoint.TryParse(e, out var ep) || ep.Port == 0)
                    || update.DiscoKey.Length is not (0 or 32))
                {
                    SendError(ControlErrorCodes.InvalidRequest, $"endpoints must be at most {TailnetState.MaxEndpoints} IP:port values, and the disco key 32 bytes");
                    return;
                }
                // A reconnecting agent sends its endpoints right after its subscribe, before the entity has said which
                // version it holds: a report from the previous session, stamped by a node whose clock is ahead, would
                // outrank this one, and the peers would keep the old endpoints. So it waits for that answer (also
                // when the subscribe is held back by the device's budget).
                if ((_subscribed || _held.ContainsKey(DeviceRequest.Subscribe)) && !_entityVersionHeard)
                {
                    _endpointsAwaitingVersion = update;
                    break;
                }
                ReportEndpoints(update);
                break;
            case ClientMessage.BodyOneofCase.Hostinfo:
                var info = message.Hostinfo;
                if (DeviceRoutes.Check(info.AdvertisedRoutes, out var routes) is { } badRoutes)
                {
                    SendError(ControlErrorCodes.InvalidRequest, "advertised routes refused: " + badRoutes.Message);
                    return;
                }
                SendUntilConfirmed(new UpdateDeviceHostinfo(_tailnetId!, _deviceId!, DeviceRegistrar.Truncate(info.Hostname, 255),
                    DeviceRegistrar.Truncate(info.Os, 64), DeviceRegistrar.Truncate(info.AgentVersion, 64)));
                SendUntilConfirmed(new AdvertiseDeviceRoutes(_tailnetId!, _deviceId!, routes));
                break;
            case ClientMessage.BodyOneofCase.RotateNodeKey:
                Rotate(message.RotateNodeKey);
                break;
            case ClientMessage.BodyOneofCase.Ping or ClientMessage.BodyOneofCase.Pong:
                OnPingPong(message);
                break;
            case ClientMessage.BodyOneofCase.Logout:
                _loggingOut = true;
                var asked = new ExpireDevice(_tailnetId!, _deviceId!, _services.Clock.GetUtcNow());
                _services.Tailnets.Ask<object>(asked, AskTimeout).PipeTo(Self,
                    success: answer => new LogoutAnswered(answer),
                    failure: _ => new LogoutAnswered(Rejection.Unavailable("the cluster did not answer in time; retry")));
                break;
            default:
                SendError(ControlErrorCodes.FrameMalformed, "empty or unknown client message");
                break;
        }
    }

    private static DeviceRequest? RequestKind(ClientMessage.BodyOneofCase body) => body switch
    {
        ClientMessage.BodyOneofCase.Endpoints => DeviceRequest.Endpoints,
        ClientMessage.BodyOneofCase.Hostinfo => DeviceRequest.Hostinfo,
        ClientMessage.BodyOneofCase.Subscribe => DeviceRequest.Subscribe,
        ClientMessage.BodyOneofCase.RotateNodeKey => DeviceRequest.NodeKeyRotation,
        _ => null,
    };

    /// <summary>
    /// Whether the device's budget for this kind of request allows it now. If not, it is held (replacing one
    /// held before: each kind is a "latest wins" report or request, and the agent needs no answer to the ones
    /// it replaced) and handled when the budget allows, so a buggy or hostile agent slows only itself.
    /// </summary>
    private bool Admitted(DeviceRequest kind, ClientMessage message)
    {
        if (_services.Admission.TryAdmitFromDevice(_machineHex, kind, out var retryAfterMs)) return true;
        if (!_heldLogged) _log.Info("Device {0} asks more often than its budget allows ({1}); the latest of each kind is handled when it does", _deviceId, kind);
        _heldLogged = true;
        _held[kind] = message;
        if (!Timers.IsTimerActive(("held", kind))) Timers.StartSingleTimer(("held", kind), new HandleHeld(kind), TimeSpan.FromMilliseconds(retryAfterMs));
        return false;
    }

    /// <summary>Links the stream to the device's entity through the shard region (wherever it lives now), resuming after what this session delivered.</summary>
    /// <param name="repeat">The session's own repeat (heartbeat, or an attach left unanswered), not the agent's subscribe (see <see cref="AttachSession.RepeatedAt"/>).</param>
    private void Attach(bool confirm, bool repeat = false)
    {
        if (!_subscribed || _deviceId is null) return;
        _services.Devices.Tell(new AttachSession(_deviceId, Self, _lastDelivered, confirm, _reportedEndpoints, _startedAt,
            repeat ? _services.Clock.GetUtcNow().UtcTicks : 0));
        _attachAnswered = false;
        // An unanswered request to confirm the agent's version stays one when it is sent again.
        _attachConfirm = confirm || (_attachConfirm && Timers.IsTimerActive("attach-unanswered"));
        Timers.StartSingleTimer("attach-unanswered", AttachUnanswered.Instance, AttachRetry);
    }

    private void WatchEntity(IActorRef entity)
    {
        if (entity.Equals(_deviceEntity)) return;
        if (_deviceEntity is not null) Context.Unwatch(_deviceEntity);
        _deviceEntity = entity;
        Context.Watch(entity);
    }

    /// <summary>
    /// Through the device's entity, which keeps the latest, to the tailnet (soft state there, not journaled), which
    /// patches the peers. Versioned by arrival, above any version the entity said it holds (a coordinator whose
    /// clock is behind still makes a newer one), so that a report delayed across a failover never overwrites a
    /// newer one, however long it was held up.
    /// </summary>
    private void ReportEndpoints(EndpointUpdate update)
    {
        _reportVersion = Math.Max(_reportVersion + 1, _services.Clock.GetUtcNow().UtcTicks);
        // In their canonical form, each once: the text is what every peer and every full map carries, and "1.2.3.4:0041641"
        // parses as well as "1.2.3.4:41641" (32 padded ones would be kilobytes per device, sent to every peer).
        _reportedEndpoints = new UpdateDeviceEndpoints(_tailnetId!, _deviceId!, [.. update.Endpoints.Select(e => IPEndPoint.Parse(e).ToString()).Distinct()], update.HomeRelay,
            Convert.ToHexStringLower(update.DiscoKey.Span), _reportVersion);
        SendUntilConfirmed(_reportedEndpoints);
    }

    private void Rotate(RotateNodeKey rotate)
    {
        if (rotate.OldNodeKey.Length != 32 || rotate.NewNodeKey.Length != 32)
        {
            SendError(ControlErrorCodes.InvalidRequest, "node keys are 32 bytes");
            return;
        }
        var oldKey = new Curve25519PublicKey(rotate.OldNodeKey.Span);
        var newKey = new Curve25519PublicKey(rotate.NewNodeKey.Span);
        // Both keys must be proven: the old one so that only its holder can retire it, the new one so
        // that nobody can claim a key they do not hold.
        if (!NodeKeyProof.Verify(_services.CoordinatorKey, oldKey, _machine.Key, rotate.OldKeyProof.Span) ||
            !NodeKeyProof.Verify(_services.CoordinatorKey, newKey, _machine.Key, rotate.NewKeyProof.Span))
        {
            SendError(ControlErrorCodes.NodeKeyProofInvalid, "a rotation must prove both the old and the new node key");
            return;
        }
        var request = new RotateDeviceNodeKey(_tailnetId!, _deviceId!, oldKey.ToHex(), newKey.ToHex(), _services.Clock.GetUtcNow());
        _services.Tailnets.Ask<object>(request, AskTimeout).PipeTo(Self,
            success: answer => new RotationAnswered(newKey, answer),
            failure: _ => new RotationAnswered(newKey, Rejection.Unavailable("the cluster did not answer in time")));
    }

    /// <summary>
    /// A rotation the cluster could not answer may still be applied (the command was delivered late, after
    /// a shard move or behind a slow journal), and then every peer expects the new key while the agent,
    /// never told, keeps the old one and waits on its rotation for good. So the stream ends: the agent
    /// reconnects, and its registration finds out which key stands (adopting the new one, or sending the
    /// rotation again, which is idempotent). A refusal (a bad proof, a key in use) is only reported.
    /// </summary>
    private void OnRotationAnswered(RotationAnswered answered)
    {
        if (answered.Answer is not DeviceInfo info)
        {
            var rejection = answered.Answer as Rejection ?? Rejection.Unavailable("unexpected answer");
            if (rejection.Code == ControlErrorCodes.Unavailable) Close(rejection.Code, $"node key rotation not confirmed ({rejection.Message}); reconnect to finish it");
            else SendError(rejection.Code, rejection.Message);
            return;
        }
        var rotated = new NodeKeyRotated { NodeKey = ByteString.CopyFrom(answered.NewKey.ToArray()) };
        if (info.Device.KeyExpiry is { } expiry) rotated.KeyExpiry = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(expiry);
        Send(new ServerMessage { NodeKeyRotated = rotated });
        _nodeKey = answered.NewKey;
        _keyExpiry = info.Device.KeyExpiry;
        if (_subscribed) SendRelayTicket(withMap: false); // the old ticket names the old key
    }

    /// <summary>
    /// The relay map (on subscribe) and a fresh ticket for the current node key; renewed at half the
    /// ticket's life for as long as the session lasts, so a connected agent never holds an expired one.
    /// </summary>
    private void SendRelayTicket(bool withMap)
    {
        if (_services.Relays is not { } relays || relays.Map.Regions.Count == 0 || _nodeKey is not { } key || _tailnetId is null) return;
        var now = _services.Clock.GetUtcNow();
        var update = relays.Issue(key, _tailnetId, now, _keyExpiry, withMap);
        Send(new ServerMessage { Relay = update });
        var renewIn = (update.TicketExpiry.ToDateTimeOffset() - now) / 2;
        if (renewIn > TimeSpan.FromSeconds(5)) Timers.StartSingleTimer("relay-ticket", RenewRelayTicket.Instance, renewIn);
    }

    /// <summary>
    /// A renewal first asks the tailnet for the device's key expiry: the session learns it at registration
    /// and rotation only, and it moves without either (tagging a device lifts it, untagging sets a new one).
    /// A ticket capped at a lifted expiry would run out there, with no renewal after it, and the relays
    /// would close the device's connections until its stream happened to reconnect.
    /// </summary>
    private void AskKeyExpiryForTicket()
    {
        if (_nodeKey is not { } key || _tailnetId is null || _deviceId is null) return;
        _services.Tailnets.Ask<object>(new GetDevice(_tailnetId, _deviceId), AskTimeout).PipeTo(Self,
            success: answer => new KeyExpiryForTicket(key, answer),
            failure: _ => new KeyExpiryForTicket(key, null));
    }

    private void OnKeyExpiryForTicket(KeyExpiryForTicket learned)
    {
        if (_nodeKey is not { } key || key != learned.NodeKey) return; // rotated meanwhile: that sent its own ticket
        if (learned.Answer is Rejection { Code: ApiErrorCodes.NotFound } gone)
        {
            // The device (or its tailnet) was deleted and the end of this session was lost on the way (its entity
            // passivated, moving, or on a node that died). A renewed ticket would outlive the relays' revocation
            // of the device's key; the session ends as the device's entity would have ended it.
            Close(ControlErrorCodes.DeviceDeleted, $"this device is no longer in its tailnet ({gone.Message})");
            return;
        }
        // The tailnet's word counts only for the key this session holds; without an answer the ticket renews as it was.
        if (learned.Answer is DeviceInfo { Device: var device } && device.NodeKey == key.ToHex())
        {
            if (device.Status == DeviceStatus.Expired || device.KeyLapsedBy(_services.Clock.GetUtcNow()))
            {
                // Expired (by an admin, a logout or its key's time) and the end of this session not here yet: a fresh
                // ticket would outlive the relays' revocation of the key. A logout under way ends the session itself.
                if (!_loggingOut && _endAfterLogout is null) Close(ControlErrorCodes.DeviceExpired, TailnetRules.ExpiredDeviceMessage);
                return;
            }
            _keyExpiry = device.KeyExpiry;
        }
        SendRelayTicket(withMap: false);
    }

    /// <summary>The agent logs out: its node key is expired (peers drop it at once), then the agent hears it is out.</summary>
    private void OnLogoutAnswered(LogoutAnswered answered)
    {
        _loggingOut = false;
        if (answered.Answer is Rejection rejection) SendError(rejection.Code, rejection.Message);
        else
        {
            _log.Info("Device {0} logged out", _deviceId);
            Send(new ServerMessage { LoggedOut = new LoggedOut() });
        }
        if (_endAfterLogout is { } ended)
        {
            _endAfterLogout = null;
            Close(ended.Code, ended.Message);
        }
    }

    // ------------------------------------------------------------------ the stream

    private void Heard() => _lastHeard = _services.Clock.GetTimestamp();

    private void OnPingPong(ClientMessage message)
    {
        if (message.BodyCase == ClientMessage.BodyOneofCase.Ping) Send(new ServerMessage { Pong = new Pong { Nonce = message.Ping.Nonce } });
    }

    private void OnKeepAlive()
    {
        if (_deviceId is null && !_registering && _services.Clock.GetElapsedTime(_unregisteredSince) > _services.UnregisteredLimit)
        {
            // A stream that keeps no device, and is not waiting for an approval or a login, holds a session and its queue
            // for nothing: streams with made-up machine keys (each sending a refused registration now and then) would add up.
            Close(ControlErrorCodes.NotRegistered, $"no device registered on this stream for {_services.UnregisteredLimit.TotalSeconds:0} s; the stream ends");
            return;
        }
        var silent = _services.Clock.GetElapsedTime(_lastHeard);
        if (silent > _services.SilenceLimit)
        {
            Close(ControlErrorCodes.Unavailable, $"nothing heard from the agent for {_services.SilenceLimit.TotalSeconds:0.#} s");
            return;
        }
        // Agents speak only when they have something to say or are asked: a quiet agent is asked, however
        // much this side is sending (deltas prove this side alive, not the agent). And an agent that has
        // heard nothing from us for an interval hears a ping.
        if (silent >= _services.KeepAliveInterval || _services.Clock.GetElapsedTime(_lastSent) >= _services.KeepAliveInterval)
            Send(new ServerMessage { Ping = new Ping { Nonce = ++_pingNonce } });
    }

    private void OnMove(MoveAgent move)
    {
        Send(new ServerMessage { GoAway = new GoAway { Reason = move.Reason, AfterMs = (uint)move.After.TotalMilliseconds } });
        End();
    }

    private void Send(IMessage message) => Send(message.ToByteArray());

    private void Send(byte[] serverMessage)
    {
        if (_closing) return;
        if (_outbound.TryQueue(serverMessage))
        {
            _lastSent = _services.Clock.GetTimestamp();
            return;
        }
        // The stream ended (or its reader ended it, with a reason queued for the agent), and its StreamClosed is on the
        // way: nothing to say about it, and what is queued still goes.
        if (_streamEnded.IsCancellationRequested || _outbound.IsCompleted)
        {
            End();
            return;
        }
        // The agent does not read fast enough: drop it, and what it has not read (the stream ends at once, not
        // once an agent that stopped reading takes it); it resumes from its last version on reconnect.
        _log.Warning("Session of machine {0} cannot keep up (its queue of {1} frames or {2} MiB is full); closing it",
            _machine, AgentStreamQueue.DefaultFrames, AgentStreamQueue.DefaultBytes >> 20);
        _closing = true;
        _outbound.Abandon();
        Context.Stop(Self);
    }

    private void SendError(string code, string message) => Send(new ServerMessage { Error = new Weft.Contracts.Control.Error { Code = code, Message = message } });

    private void Close(string code, string message)
    {
        SendError(code, message);
        End();
    }

    private void End()
    {
        _closing = true;
        _outbound.Complete();
        Context.Stop(Self);
    }

    // ------------------------------------------------------------------ what the agent reports

    /// <summary>
    /// The agent sends its endpoints when they change, and its host info and routes once per session;
    /// it does not send them again while its stream stays up. So each goes to the tailnet until the
    /// tailnet confirms it: a tailnet entity whose node just died loses what is sent to it until the
    /// node is downed and the shard moves (a load test killing a coordinator lost 882 endpoint changes
    /// this way, while every store agreed with the stale truth). Only the latest of each kind is
    /// kept; an answer to an older one is ignored.
    /// </summary>
    private void SendUntilConfirmed(ITailnetDeviceCommand command)
    {
        var kind = command.GetType();
        var attempt = ++_reportAttempts;
        _unconfirmed[kind] = (command, attempt);
        var (target, message) = command is UpdateDeviceEndpoints endpoints
            ? (_services.Devices, (object)new ReportEndpoints(endpoints.DeviceId, endpoints))
            : (_services.Tailnets, command);
        target.Ask<object>(message, ReportConfirmTimeout).PipeTo(Self,
            success: answer => new TailnetAnswered(kind, attempt, answer),
            failure: _ => new TailnetAnswered(kind, attempt, null));
    }

    private void OnTailnetAnswered(TailnetAnswered answered)
    {
        if (!_unconfirmed.TryGetValue(answered.Kind, out var pending) || pending.Attempt != answered.Attempt) return;
        // No answer, or storage away: again shortly. Anything else (stored, unchanged, refused for good) settles it.
        if (answered.Answer is null or Rejection { Code: ApiErrorCodes.Unavailable })
        {
            Timers.StartSingleTimer(("resend", answered.Kind), new ResendUnconfirmed(answered.Kind), ReportResendDelay);
            return;
        }
        _unconfirmed.Remove(answered.Kind);
    }

    private sealed record TailnetAnswered(Type Kind, int Attempt, object? Answer);

    private sealed record ResendUnconfirmed(Type Kind);

    private sealed record HandleHeld(DeviceRequest Kind);


    private sealed record RotationAnswered(Curve25519PublicKey NewKey, object Answer);

    private sealed record LogoutAnswered(object Answer);

    private sealed record KeyExpiryForTicket(Curve25519PublicKey NodeKey, object? Answer);

    private sealed class KeepAlive
    {
        public static readonly KeepAlive Instance = new();
    }

    private sealed class RenewRelayTicket
    {
        public static readonly RenewRelayTicket Instance = new();
    }

    private sealed class Reattach
    {
        public static readonly Reattach Instance = new();
    }

    private sealed class AttachUnanswered
    {
        public static readonly AttachUnanswered Instance = new();
    }
}
