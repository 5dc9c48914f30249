using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using Google.Protobuf;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Control;

namespace Weft.Cluster.Devices;

/// <summary>
/// One device's netmap stream. It numbers what it sends the agent (version = incarnation &lt;&lt; 32 |
/// counter, so versions keep growing across restarts), keeps the recent deltas so a reconnecting
/// agent can resume, and holds the link to the session wherever in the cluster the agent's stream
/// landed.
/// <para>
/// Lifecycle: sharding starts this entity on the first message and passivates it when idle. Nothing
/// it holds in memory is needed after a stop: the session re-attaches (on a timer, and as soon as it
/// sees this incarnation terminate), a new incarnation starts, and the agent gets a full map built by
/// the tailnet. Changes that arrive before the session re-attaches are dropped on purpose: the full
/// map that follows contains them.
/// </para>
/// <para>
/// Soft state. The agent's endpoints pass through here on their way to the tailnet, which does not
/// journal them; this entity keeps the latest. A resync comes from a new tailnet incarnation that
/// knows them only as of its last snapshot, so the entity answers it by reporting them again, with
/// the device's presence, and then <see cref="DeviceReportedAgain"/>: the tailnet holds its full
/// maps until every device has (or a deadline passes), and marks what it still lacks as unknown. A
/// new incarnation of this entity learns the endpoints from the session's attach.
/// </para>
/// <para>
/// A full map is asked of the tailnet and may never come: the tailnet entity can be mid-move, or on
/// a node that was just downed, when the request reaches it. So a request that stays unanswered is
/// repeated every <see cref="DefaultSnapshotRetry"/>; without that, the stream would wait for the
/// lost map forever and drop every change meanwhile. A tailnet that is merely slow (a failover or
/// a join storm fills its mailbox) gets the request and its repeats together: each repeat names the
/// same need (<see cref="SendNetMap.Need"/>), so it answers once, and every
/// <see cref="RepeatsBeforeForce"/>th repeat may be answered again in case the answer was lost.
/// </para>
/// </summary>
public sealed class DeviceActor : EventSourcedEntity<DeviceState, IDeviceEvent>, IWithTimers
{
    /// <summary>How long a full-map request may stay unanswered before it is sent again.</summary>
    public static readonly TimeSpan DefaultSnapshotRetry = TimeSpan.FromSeconds(3);

    /// <summary>Every so many repeats of a full-map request, one asks the tailnet to answer again a need it answered, if its answer had the time to arrive (<see cref="SendNetMap.ForcedAt"/>).</summary>
    public const int RepeatsBeforeForce = 3;

    /// <summary>How long a message to the session may take to arrive, as far as a repeated attach is concerned (<see cref="AttachSession.RepeatedAt"/>).</summary>
    public static readonly TimeSpan DeliveryAllowance = TimeSpan.FromSeconds(5);

    /// <summary>Deltas kept for resumption: enough to bridge a reconnect, small enough per device.</summary>
    public const int DeltaLogEntries = 32;
    public const int DeltaLogBytes = 64 * 1024;

    private readonly TimeProvider _clock;
    private readonly string[] _coordinatorUrls;
    private readonly TimeSpan _snapshotRetry;
    private readonly DeltaLog _log = new(DeltaLogEntries, DeltaLogBytes);
    private IActorRef _tailnets = ActorRefs.Nobody;
    private IActorRef? _session;
    // When the attached session's stream opened (AttachSession.StartedAt; 0: not known).
    private long _sessionStartedAt;
    private AttachSession? _pendingAttach;
    private bool _incarnated;
    private bool _awaitingSnapshot;
    // A resync arrived with no session attached: the next session starts from a full map.
    private bool _stale;
    // When this entity last sent the attached session something (UTC ticks): set as soon as it serves the session its start.
    private long _lastSentAt;
    private uint _counter;
    // The full map asked for (this epoch and a count of requests), and how many times the request was repeated.
    private uint _mapRequests;
    private ulong _mapNeed;
    private int _mapRepeats;
    // The agent's latest endpoints (soft state at the tailnet: reported again on every resync).
    private UpdateDeviceEndpoints? _endpoints;
    // A tailnet incarnation asked for the soft state while no session was attached: the next session's
    // attach hands the endpoints over even when they repeat what this entity already holds.
    private bool _endpointsOwed;
    // The last message heard from a tailnet incarnation (none since this entity started): a gap after it was lost on the way.
    private FanOutStamp _heard;
    // Tailnet incarnations a later one replaced (the latest few): what they still send arrived late, and is out of date.
    private readonly Queue<long> _retiredIncarnations = new();
    private const int RetiredIncarnationsKept = 8;

    public DeviceActor(string deviceId, PersistenceSettings settings, TimeProvider clock, string[] coordinatorUrls, TimeSpan snapshotRetry) : base(settings, DeviceState.Empty(deviceId))
    {
        _clock = clock;
        _coordinatorUrls = coordinatorUrls;
        _snapshotRetry = snapshotRetry;
        PersistenceId = "device-" + deviceId;
    }

    public override string PersistenceId { get; }

    public ITimerScheduler Timers { get; set; } = null!;

    /// <param name="coordinatorUrls">Where agents may reach the cluster; sent with every full netmap (may be empty).</param>
    /// <param name="snapshotRetry">How long a full-map request may stay unanswered (default <see cref="DefaultSnapshotRetry"/>).</param>
    public static Props PropsFor(string deviceId, PersistenceSettings settings, TimeProvider clock, string[] coordinatorUrls, TimeSpan? snapshotRetry = null)
    {
        var retry = snapshotRetry ?? DefaultSnapshotRetry;
        return Props.Create(() => new DeviceActor(deviceId, settings, clock, coordinatorUrls, retry)).WithMailbox(Hosting.CompactMailbox.Id);
    }

    private ulong Version => ((ulong)State.Incarnation << 32) | _counter;

    protected override void PreStart()
    {
        base.PreStart();
        _tailnets = ActorRegistry.For(Context.System).Get<TailnetActor>();
    }

    protected override void PreRestart(Exception reason, object message)
    {
        _session?.Tell(new AttachAgain(State.DeviceId));
        base.PreRestart(reason, message);
    }

    protected override DeviceState Apply(DeviceState state, IDeviceEvent @event) => state.Apply(@event);

    protected override bool IsCommand(object message) => message is IDeviceCommand;

    protected override Decision<IDeviceEvent> Decide(DeviceState state, object command) => state.Process((IDeviceCommand)command);

    protected override bool TryAnswer(DeviceState state, object message, out object reply)
    {
        reply = message is GetDeviceStream
            ? new DeviceStreamInfo(state.DeviceId, _incarnated ? Version : 0, _awaitingSnapshot, _session?.Path.ToString(),
                Akka.Cluster.Cluster.Get(Context.System).SelfAddress.ToString())
            : null!;
        return reply is not null;
    }

    protected override object Acknowledge(object command, DeviceState stateAfter) => command switch
    {
        InitializeDevice => new DeviceReady(stateAfter.DeviceId, stateAfter.Incarnation),
        _ => new DeviceDone(stateAfter.DeviceId),
    };

    /// <summary>
    /// A version epoch this entity stored is its own: from now on it numbers what it sends from there. It
    /// comes with the device's initialization (a new device) or with the first attach of a later activation.
    /// </summary>
    /// <summary>A removal whose forgetting was cut off (a crash, a refused snapshot) forgets again.</summary>
    protected override void OnRecovered()
    {
        base.OnRecovered();
        if (State.Removed && !KeepsAllEvents) ForgetHistory(State);
    }

    protected override void OnEventsPersisted(IReadOnlyList<IDeviceEvent> events, DeviceState before, DeviceState after)
    {
        // Removed, the device's state is all there is to keep (so that a late session is told so): its snapshot
        // becomes its whole history, instead of an event per activation for good.
        if (after.Removed && !before.Removed && !KeepsAllEvents) ForgetHistory(after);
        if (after.Incarnation == before.Incarnation) return;
        _incarnated = true;
        _counter = 0;
    }

    protected override void OnCommandPersisted(object command, IActorRef sender, DeviceState stateAfter)
    {
        switch (command)
        {
            case StartIncarnation:
                // The attaches that waited for the epoch (the latest session's); the state now has it.
                if (_pendingAttach is { } attach)
                {
                    _pendingAttach = null;
                    Attach(attach);
                }
                return;
            case MarkDeviceRemoved removed:
                EndSession(ControlErrorCodes.DeviceDeleted, removed.Message);
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
                    // Several attaches may arrive before the epoch is stored; the latest session's wins (the others attach again).
                    var first = _pendingAttach is null;
                    if (first || !OpenedBefore(attach, _pendingAttach!.StartedAt)) _pendingAttach = attach;
                    // Its answer comes back here only when the write fails (see the Rejection case below).
                    if (first) Submit(new StartIncarnation(State.DeviceId), Self);
                }
                else Attach(attach);
                return true;
            case Rejection refused when Sender.Equals(Self):
                // Only this entity's own writes answer it with itself as the sender (the tailnet's refusals do not).
                // The epoch was not stored (the journal rejected the write, or the store is down). The waiting
                // session ends and its agent reconnects: its next attach asks for the epoch again. Holding the
                // attach instead would wedge this entity, as every later attach would wait behind it.
                if (_pendingAttach is { } waiting)
                {
                    _pendingAttach = null;
                    waiting.Session.Tell(new SessionEnded(ControlErrorCodes.Unavailable, "this device's stream could not start: " + refused.Message));
                }
                return true;
            case ReportEndpoints report:
                KeepUnlessLate(report.Report);
                // The tailnet answers the session's ask. It hears the newest report this entity knows:
                // a tailnet that started over takes any report as news, and an older one would roll its
                // peers' view back until the newest came again (one more patch to every peer).
                _tailnets.Tell(_endpoints, Sender);
                return true;
            case ReportEndpointsAgain:
                if (_endpoints is { } held) _tailnets.Tell(held, ActorRefs.Nobody);
                return true;
            case PeerChanges changes:
                OnChanges(changes);
                return true;
            case NetMapSnapshot snapshot:
                OnSnapshot(snapshot);
                return true;
            case SnapshotOverdue:
                OnSnapshotOverdue();
                return true;
            case Terminated terminated when terminated.ActorRef.Equals(_session):
                Detach();
                return true;
            case Terminated:
                // A session this incarnation does not have: the one attached before a restart in place
                // (the watch outlives the restart), which ended before it attached again. Nothing to detach.
                return true;
            default:
                return false;
        }
    }

    private void Attach(AttachSession attach)
    {
        var session = attach.Session;
        if (_session is not null && !_session.Equals(session))
        {
            if (OpenedBefore(attach, _sessionStartedAt))
            {
                // A session the agent has left (its stream opened before the attached one's), its attach held up
                // by a failover: it ends, and the agent's own session keeps the stream.
                Telemetry.CoordinatorMetrics.SessionsSuperseded.Add(1, Telemetry.CoordinatorMetrics.Late);
                session.Tell(new SessionEnded(ControlErrorCodes.Unavailable, "a newer session of this device is attached"));
                return;
            }
            // The agent reconnected (perhaps to another coordinator node): the newest stream wins.
            Context.Unwatch(_session);
            Telemetry.CoordinatorMetrics.SessionsSuperseded.Add(1, Telemetry.CoordinatorMetrics.Replaced);
            _session.Tell(new SessionEnded(ControlErrorCodes.Unavailable, "replaced by a newer session of this device"));
        }
        var sameSession = session.Equals(_session);
        if (!sameSession) Context.Watch(session);
        _session = session;
        _sessionStartedAt = attach.StartedAt;
        // Every attach, first or repeated, tells the tailnet the device is online: it is the presence heartbeat.
        _tailnets.Tell(new DeviceOnline(State.TailnetId, State.DeviceId, true, _clock.GetUtcNow(), HoldsEndpoints: _endpoints is not null) { Heard = _heard });
        if (attach.Endpoints is { } endpoints && !endpoints.Repeats(_endpoints) && KeepUnlessLate(endpoints))
        {
            // This incarnation had not heard them (or the tailnet may not have): the tailnet finds them unchanged, or learns them.
            // An attach that carries older ones (a session the agent has left, re-attaching late) changes nothing.
            _tailnets.Tell(endpoints, ActorRefs.Nobody);
            _endpointsOwed = false;
        }
        else if (_endpointsOwed && _endpoints is { } newest)
        {
            // A tailnet that started over asked while no session was here: it holds them as unknown until told.
            _tailnets.Tell(newest, ActorRefs.Nobody);
            _endpointsOwed = false;
        }
        session.Tell(new SessionAttached(State.DeviceId, Version, _endpoints?.Version ?? 0));

        if (_awaitingSnapshot) return; // a full map is on its way to this session
        // The session's own repeat, sent before what this entity sent it last could have arrived: that is on its way, in order.
        // A session already attached and not waiting for a map has had its start (a full map, a resume, or word that it is
        // up to date): an attached session is served at once or waits for the map, and the map serves it.
        if (attach.RepeatedAt != 0 && sameSession && attach.RepeatedAt < _lastSentAt + DeliveryAllowance.Ticks) return;
        if (_stale)
        {
            RequestSnapshot();
            return;
        }
        if (attach.LastVersion != 0 && attach.LastVersion == Version)
        {
            if (attach.Confirm) Deliver(new ServerMessage { UpToDate = new UpToDate { Version = Version } }, 0);
            _lastSentAt = _clock.GetUtcNow().UtcTicks;
            return;
        }
        if (attach.LastVersion != 0 && _log.CanResumeFrom(attach.LastVersion))
        {
            // Resume: everything after the agent's version (duplicates of deltas in flight are ignored by the agent).
            foreach (var (message, version) in _log.After(attach.LastVersion)) session.Tell(new DeliverToAgent(message, version));
            _lastSentAt = _clock.GetUtcNow().UtcTicks;
            return;
        }
        RequestSnapshot();
    }

    /// <summary>
    /// Takes <paramref name="report"/> unless it is a late one, by the rule the tailnet applies
    /// (<see cref="NetMapRules.EndpointsNewer"/>): older than the one held, however much (an attach
    /// from a session the agent has left, delivered after a failover held it up); true when taken.
    /// </summary>
    private bool KeepUnlessLate(UpdateDeviceEndpoints report)
    {
        if (_endpoints is not null && report.Version != _endpoints.Version && !NetMapRules.EndpointsNewer(report.Version, _endpoints.Version)) return false;
        _endpoints = report;
        return true;
    }

    /// <summary>Whether <paramref name="attach"/> comes from a stream opened before the one started at <paramref name="startedAt"/> (false when either is not known).</summary>
    private static bool OpenedBefore(AttachSession attach, long startedAt) => attach.StartedAt != 0 && startedAt != 0 && attach.StartedAt < startedAt;

    private void Detach()
    {
        _session = null;
        _sessionStartedAt = 0;
        _tailnets.Tell(new DeviceOnline(State.TailnetId, State.DeviceId, false, _clock.GetUtcNow()));
    }

    /// <summary>Asks the tailnet for a full map: a new need, numbered in this epoch.</summary>
    private void RequestSnapshot()
    {
        _mapNeed = ((ulong)State.Incarnation << 32) | ++_mapRequests;
        _mapRepeats = 0;
        AskForSnapshot();
    }

    private void AskForSnapshot()
    {
        _awaitingSnapshot = true;
        _stale = false;
        var forced = _mapRepeats > 0 && _mapRepeats % RepeatsBeforeForce == 0;
        _tailnets.Tell(new SendNetMap(State.TailnetId, State.DeviceId, _mapNeed, forced ? _clock.GetUtcNow() : null));
        Timers.StartSingleTimer(nameof(SnapshotOverdue), SnapshotOverdue.Instance, _snapshotRetry);
    }

    private void OnSnapshotOverdue()
    {
        if (!_awaitingSnapshot) return;
        if (_session is not null)
        {
            _mapRepeats++;
            AskForSnapshot();
            return;
        }
        // Nobody to send it to: the next session asks afresh.
        _awaitingSnapshot = false;
        _stale = true;
    }

    /// <summary>How a message from the tailnet came, by its stamp (see <see cref="FanOutStamp"/>).</summary>
    private enum Heard { InOrder, AfterALoss, FromARetiredIncarnation }

    /// <summary>
    /// Takes in a message's stamp: whether it came after one that was lost (a full map covers whatever was lost before
    /// it; a change does not), or from an incarnation a later one replaced (late, and not heard as the latest).
    /// </summary>
    private Heard Hear(FanOutStamp stamp)
    {
        if (stamp.IsNone) return Heard.InOrder;
        // Held up on the way (a busy link from the node it left) until its successor had spoken: neither a loss nor news.
        if (_retiredIncarnations.Contains(stamp.Incarnation)) return Heard.FromARetiredIncarnation;
        if (!_heard.IsNone && stamp.Incarnation != _heard.Incarnation)
        {
            _retiredIncarnations.Enqueue(_heard.Incarnation);
            if (_retiredIncarnations.Count > RetiredIncarnationsKept) _retiredIncarnations.Dequeue();
        }
        var missed = !stamp.Follows(_heard);
        if (missed)
        {
            Log.Warning("Device {0}: a message from its tailnet was lost on the way (heard #{1} after #{2}{3})", State.DeviceId, stamp.Sequence, _heard.Sequence,
                stamp.Incarnation == _heard.Incarnation ? "" : " of another incarnation");
            Telemetry.CoordinatorMetrics.FanOutGaps.Add(1, Telemetry.CoordinatorMetrics.SeenByEntity);
        }
        if (stamp.Incarnation != _heard.Incarnation || stamp.Sequence > _heard.Sequence) _heard = stamp;
        return missed ? Heard.AfterALoss : Heard.InOrder;
    }

    private void OnChanges(PeerChanges changes)
    {
        var heard = Hear(changes.Stamp);
        var missed = heard == Heard.AfterALoss;
        if (changes.EndCode is { } code)
        {
            if (code == ControlErrorCodes.DeviceDeleted) Submit(new MarkDeviceRemoved(State.DeviceId, changes.EndMessage ?? "this device was deleted from the tailnet"), ActorRefs.Nobody);
            else EndSession(code, changes.EndMessage ?? code);
            return;
        }
        // A change or a resync from an incarnation its successor replaced: the successor's full map covers it.
        if (heard == Heard.FromARetiredIncarnation) return;
        // A change (or a resync) from the tailnet was lost on the way, and the versions cannot show it: this one was
        // numbered after it. Taken as a resync: the full map covers both, and a lost resync's soft state is reported again.
        if (changes.Resync || missed)
        {
            // From a tailnet incarnation that may have lost the soft state: it is reported again before the full map is asked for.
            if (_session is not null)
            {
                _tailnets.Tell(new DeviceOnline(State.TailnetId, State.DeviceId, true, _clock.GetUtcNow()));
                if (_endpoints is { } endpoints) _tailnets.Tell(endpoints, ActorRefs.Nobody);
            }
            _tailnets.Tell(new DeviceReportedAgain(State.TailnetId, State.DeviceId));
            // A map already asked for still answers (the new incarnation holds every full map until it has
            // relearned): asked again under the same need, it is built once, whichever incarnation got the request.
            // After a loss, under a new need: the lost message may have been that very map, which the tailnet would
            // take the same need's repeat for (its answer on the way) and not build again.
            if (_session is not null && _awaitingSnapshot && !missed) AskForSnapshot();
            else if (_session is not null) RequestSnapshot();
            else _stale = _endpointsOwed = true;
            return;
        }
        // Before the first session of this incarnation, or while a full map is on its way, a change
        // needs no version of its own: the full map the session gets contains it.
        if (_awaitingSnapshot || !_incarnated) return;

        var baseVersion = Version;
        _counter++;
        // Stamping also checks the bytes: a malformed delta throws here and never enters the log.
        var message = VersionStamp.Delta(changes.Delta, baseVersion, Version);
        _log.Add(baseVersion, Version, changes.Delta);
        if (_session is null) return;
        _session.Tell(new DeliverToAgent(message, Version));
        _lastSentAt = _clock.GetUtcNow().UtcTicks;
    }

    private void OnSnapshot(NetMapSnapshot snapshot)
    {
        if (Hear(snapshot.Stamp) == Heard.FromARetiredIncarnation || !_incarnated) return;
        _awaitingSnapshot = false;
        Timers.Cancel(nameof(SnapshotOverdue));
        _counter++;
        // Stamping also checks the bytes: a malformed map throws here, as parsing it did.
        var message = VersionStamp.FullMap(snapshot.NetMap, Version, _coordinatorUrls);
        // Deltas from before a full map are of no use to anyone: a client behind it needs this map.
        _log.Clear();
        _session?.Tell(new DeliverToAgent(message, Version));
        _lastSentAt = _clock.GetUtcNow().UtcTicks;
    }

    private void Deliver(ServerMessage message, ulong version) => _session?.Tell(new DeliverToAgent(message.ToByteArray(), version));

    private void EndSession(string code, string message)
    {
        if (_session is null) return;
        Context.Unwatch(_session);
        _session.Tell(new SessionEnded(code, message));
        Detach();
    }

    private sealed class SnapshotOverdue
    {
        public static readonly SnapshotOverdue Instance = new();
    }
}
