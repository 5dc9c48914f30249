using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Control;

namespace Weft.Cluster.Devices;

/// <summary>
/// One device: its own record (keys, what it reports), and its netmap stream. It numbers what it
/// sends the agent (version = incarnation &lt;&lt; 32 | counter, so versions keep growing across
/// restarts), keeps the recent deltas so a reconnecting agent can resume, and holds the link to
/// the session wherever in the cluster the agent's stream landed.
/// </summary>
public sealed class DeviceActor : EventSourcedEntity<DeviceState, IDeviceEvent>, IWithTimers
{
    /// <summary>Deltas kept for resumption: enough to bridge a reconnect, small enough per device.</summary>
    public const int DeltaLogEntries = 32;
    public const int DeltaLogBytes = 64 * 1024;
    /// <summary>
    /// How long after its session ends a device keeps collecting deltas, so that an agent that
    /// reconnects within it resumes instead of starting over (the tailnet keeps sending for a
    /// little longer, see <see cref="TailnetActor.ResumeWindow"/>).
    /// </summary>
    public static readonly TimeSpan ResumeWindow = TimeSpan.FromMinutes(2);
    private static readonly TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(30);

    private readonly TimeProvider _clock;
    private readonly string[] _coordinatorUrls;
    private readonly LinkedList<(ulong Version, ulong Base, byte[] Message)> _log = new();
    private int _logBytes;
    private IActorRef _tailnets = ActorRefs.Nobody;
    private IActorRef? _session;
    private AttachSession? _pendingAttach;
    private bool _incarnated;
    private bool _awaitingSnapshot;
    private bool _stale;
    private DateTimeOffset? _detachedAt;
    private uint _counter;

    public DeviceActor(string deviceId, PersistenceSettings settings, TimeProvider clock, string[] coordinatorUrls) : base(settings, DeviceState.Empty(deviceId))
    {
        _clock = clock;
        _coordinatorUrls = coordinatorUrls;
        PersistenceId = "device-" + deviceId;
    }

    public override string PersistenceId { get; }

    public ITimerScheduler Timers { get; set; } = null!;

    /// <param name="coordinatorUrls">Where agents may reach the cluster; sent with every full netmap (may be empty).</param>
    public static Props PropsFor(string deviceId, PersistenceSettings settings, TimeProvider clock, string[] coordinatorUrls) =>
        Props.Create(() => new DeviceActor(deviceId, settings, clock, coordinatorUrls));

    private ulong Version => ((ulong)State.Incarnation << 32) | _counter;

    protected override void PreStart()
    {
        base.PreStart();
        _tailnets = ActorRegistry.For(Context.System).Get<TailnetActor>();
    }

    protected override DeviceState Apply(DeviceState state, IDeviceEvent @event) => state.Apply(@event);

    protected override bool IsCommand(object message) => message is IDeviceCommand;

    protected override Decision<IDeviceEvent> Decide(DeviceState state, object command) => state.Process((IDeviceCommand)command);

    protected override object Acknowledge(object command, DeviceState stateAfter) => command switch
    {
        InitializeDevice => new DeviceReady(stateAfter.DeviceId, stateAfter.Incarnation),
        _ => new DeviceDone(stateAfter.DeviceId),
    };

    protected override void OnCommandPersisted(object command, IActorRef sender, DeviceState stateAfter)
    {
        switch (command)
        {
            case StartIncarnation:
                _incarnated = true;
                _counter = 0;
                if (_pendingAttach is { } attach)
                {
                    _pendingAttach = null;
                    Attach(attach);
                }
                return;
            case ApplyNodeKey applied:
                var rotated = new NodeKeyRotated { NodeKey = ByteString.CopyFrom(Convert.FromHexString(applied.NewNodeKey)) };
                if (applied.KeyExpiry is { } expiry) rotated.KeyExpiry = Timestamp.FromDateTimeOffset(expiry);
                sender.Tell(new DeliverToAgent(new ServerMessage { NodeKeyRotated = rotated }.ToByteArray()));
                return;
            case MarkDeviceRemoved:
                EndSession(ControlErrorCodes.DeviceDeleted, "this device was deleted from the tailnet");
                break;
        }
        base.OnCommandPersisted(command, sender, stateAfter);
    }

    protected override bool HandleOther(object message)
    {
        switch (message)
        {
            case AttachSession attach:
                if (State.Removed) attach.Session.Tell(new SessionEnded(ControlErrorCodes.DeviceDeleted, "this device was deleted from the tailnet"));
                else if (!State.IsInitialized) attach.Session.Tell(new SessionEnded(ControlErrorCodes.NotRegistered, "register first"));
                else if (!_incarnated)
                {
                    _pendingAttach = attach;
                    Submit(new StartIncarnation(State.DeviceId), ActorRefs.Nobody);
                }
                else Attach(attach);
                return true;
            case PeerChanges changes:
                OnChanges(changes);
                return true;
            case NetMapSnapshot snapshot:
                OnSnapshot(snapshot);
                return true;
            case RequestNodeKeyRotation rotate:
                var replyTo = Sender;
                _tailnets.Ask<object>(new RotateDeviceNodeKey(State.TailnetId, State.DeviceId, rotate.OldNodeKey, rotate.NewNodeKey, rotate.At), TimeSpan.FromSeconds(10))
                    .PipeTo(Self, success: answer => new RotationAnswered(rotate, answer, replyTo),
                        failure: error => new RotationAnswered(rotate, Rejection.Unavailable(error.Message), replyTo));
                return true;
            case RotationAnswered answered:
                if (answered.Answer is DeviceInfo info) Submit(new ApplyNodeKey(State.DeviceId, answered.Request.NewNodeKey, info.Device.KeyExpiry), answered.ReplyTo);
                else answered.ReplyTo.Tell(ErrorFor(answered.Answer as Rejection ?? Rejection.Unavailable("unexpected answer")));
                return true;
            case Terminated terminated when terminated.ActorRef.Equals(_session):
                Detach();
                return true;
            case Heartbeat:
                if (_session is not null) _tailnets.Tell(new DeviceOnline(State.TailnetId, State.DeviceId, true, _clock.GetUtcNow()));
                return true;
            default:
                return false;
        }
    }

    private void Attach(AttachSession attach)
    {
        if (_session is not null && !_session.Equals(attach.Session))
        {
            // The agent reconnected (perhaps to another coordinator node): the newest stream wins.
            Context.Unwatch(_session);
            _session.Tell(new SessionEnded(ControlErrorCodes.Unavailable, "replaced by a newer session of this device"));
        }
        _session = attach.Session;
        Context.Watch(_session);
        _tailnets.Tell(new DeviceOnline(State.TailnetId, State.DeviceId, true, _clock.GetUtcNow()));
        Timers.StartPeriodicTimer("heartbeat", Heartbeat.Instance, HeartbeatInterval);

        // Offline longer than the resume window, the log may lack changes the tailnet no longer sent.
        if (_detachedAt is { } detached && _clock.GetUtcNow() - detached > ResumeWindow) _stale = true;
        _detachedAt = null;
        if (_stale)
        {
            RequestSnapshot();
            return;
        }
        if (attach.LastVersion != 0 && attach.LastVersion == Version && !_awaitingSnapshot) return; // up to date
        var resumeFrom = _log.FirstOrDefault(entry => entry.Base == attach.LastVersion);
        if (attach.LastVersion != 0 && resumeFrom.Message is not null && !_awaitingSnapshot)
        {
            var replay = false;
            foreach (var entry in _log)
            {
                replay |= entry.Base == attach.LastVersion;
                if (replay) _session.Tell(new DeliverToAgent(entry.Message));
            }
            return;
        }
        RequestSnapshot();
    }

    private void Detach()
    {
        _session = null;
        _detachedAt = _clock.GetUtcNow();
        Timers.Cancel("heartbeat");
        _tailnets.Tell(new DeviceOnline(State.TailnetId, State.DeviceId, false, _clock.GetUtcNow()));
    }

    private void RequestSnapshot()
    {
        _awaitingSnapshot = true;
        _stale = false;
        _tailnets.Tell(new SendNetMap(State.TailnetId, State.DeviceId));
    }

    private void OnChanges(PeerChanges changes)
    {
        if (changes.EndCode is { } code)
        {
            if (code == ControlErrorCodes.DeviceDeleted) Submit(new MarkDeviceRemoved(State.DeviceId), ActorRefs.Nobody);
            else EndSession(code, changes.EndMessage ?? code);
            return;
        }
        if (changes.Resync)
        {
            if (_session is not null) RequestSnapshot();
            else _stale = true; // the next session starts from a full map
            return;
        }
        // Changes that a requested full map will contain anyway are dropped.
        if (_awaitingSnapshot || !_incarnated) return;

        var delta = NetMapDelta.Parser.ParseFrom(changes.Delta);
        delta.BaseVersion = Version;
        _counter++;
        delta.Version = Version;
        var message = new ServerMessage { Delta = delta }.ToByteArray();
        Remember(delta.BaseVersion, delta.Version, message);
        _session?.Tell(new DeliverToAgent(message));
    }

    private void OnSnapshot(NetMapSnapshot snapshot)
    {
        if (!_incarnated) return;
        _awaitingSnapshot = false;
        var netmap = NetMap.Parser.ParseFrom(snapshot.NetMap);
        _counter++;
        netmap.Version = Version;
        netmap.Coordinators.AddRange(_coordinatorUrls);
        // Deltas from before a full map are of no use to anyone: a client behind it needs this map.
        _log.Clear();
        _logBytes = 0;
        _session?.Tell(new DeliverToAgent(new ServerMessage { Netmap = netmap }.ToByteArray()));
    }

    private void Remember(ulong baseVersion, ulong version, byte[] message)
    {
        _log.AddLast((version, baseVersion, message));
        _logBytes += message.Length;
        while (_log.Count > DeltaLogEntries || (_logBytes > DeltaLogBytes && _log.Count > 1))
        {
            _logBytes -= _log.First!.Value.Message.Length;
            _log.RemoveFirst();
        }
    }

    private void EndSession(string code, string message)
    {
        if (_session is null) return;
        Context.Unwatch(_session);
        _session.Tell(new SessionEnded(code, message));
        Detach();
    }

    private static DeliverToAgent ErrorFor(Rejection rejection) =>
        new(new ServerMessage { Error = new Weft.Contracts.Control.Error { Code = rejection.Code, Message = rejection.Message } }.ToByteArray());

    private sealed record RotationAnswered(RequestNodeKeyRotation Request, object Answer, IActorRef ReplyTo);

    private sealed class Heartbeat
    {
        public static readonly Heartbeat Instance = new();
    }
}
