using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using Google.Protobuf;
using Weft.Cluster.Devices;
using Weft.Cluster.Machines;
using Weft.Cluster.Persistence;
using Weft.Cluster.Policy;

namespace Weft.Cluster.Tailnets;

/// <summary>
/// The sharded, event-sourced entity of one tailnet: the single writer of its settings, users, auth
/// keys and device index. After every stored change it works out which devices can see the changed
/// one and sends each a small patch — coalesced per recipient over a short window, so a burst of
/// changes becomes one message per device. Every device that a change concerns hears of it, online
/// or not: its entity numbers the change, so that no session can miss one without a gap showing.
/// <para>
/// Lifecycle: tailnet entities are remembered (see <see cref="TailnetsRegistration"/>), so sharding
/// restarts them after a rebalance or the loss of their node and never passivates them: the
/// housekeeping timer (presence timeouts, ephemeral cleanup, key expiry) always has an owner. A
/// tailnet that is not active (deleted, or never created: a message for an unknown id woke it) has
/// nothing to keep: at its next housekeeping tick it passivates, which also takes it out of the
/// remembered entities, so a failover or a restart does not start it again. A later message (a
/// heartbeat from a session that should have ended, an API read) starts it on demand. Who
/// is online is kept in memory, not written on every heartbeat; after a restart it is re-learned
/// from the devices' entities, which report presence on every session attach (a few seconds apart).
/// Patches still waiting in the coalescing window die with an incarnation, so a new one starts by
/// sending every device a resync: each connected agent gets a full map, the others get one on attach.
/// </para>
/// <para>
/// What is durable and what is soft. Everything an admin or a registration decides (settings,
/// users, keys, devices and their node keys, approval, names, tags, routes, policy, expiry, last
/// seen) is journaled before it is acknowledged. Presence and endpoints (with the home relay and
/// disco key) are soft: the agent owns them and they change all the time, so each change is applied
/// in memory and fanned out at once, with no journal write (they are in snapshots, but a snapshot is
/// not waited for). A new incarnation knows them only as of its last snapshot or stored event. The
/// resync it sends every device makes each device's entity report them again (it keeps the agent's
/// latest), then answer <see cref="DeviceReportedAgain"/>; full maps wait until every device has
/// answered, or <see cref="RelearnDeadline"/> has passed. Until a device has reported, netmaps mark
/// its endpoints unknown (<see cref="DeviceEntry.EndpointsUnknown"/>) instead of sending the
/// snapshot's, and agents keep what they hold; so no peer goes back to older endpoints, whatever
/// died with the node. A device whose entity and session died too reports when its agent
/// reconnects, which it does on subscribe. A device whose resync (or its answer) was lost is asked
/// again when its entity's next presence heartbeat says it holds endpoints
/// (<see cref="DeviceOnline.HoldsEndpoints"/>). Only a disco key that comes with a registration is journaled.
/// </para>
/// </summary>
public sealed class TailnetActor : EventSourcedEntity<TailnetState, ITailnetEvent>, IWithTimers
{
    /// <summary>How long a new incarnation holds full maps back while its devices report their soft state again.</summary>
    public static readonly TimeSpan RelearnDeadline = TimeSpan.FromSeconds(3);
    // Devices a new incarnation still waits to hear again from, and the full maps asked for meanwhile.
    private readonly HashSet<string> _relearning = new();
    private readonly Dictionary<string, ulong> _heldFullMaps = new();
    // The latest full-map need answered per device, and when: a repeat of it that comes later is not answered again (see SendNetMap).
    private readonly Dictionary<string, (ulong Need, DateTimeOffset At)> _mapsAnswered = new();
    /// <summary>How long answers are remembered: well beyond the time a device repeats its request in (<see cref="DeviceActor.DefaultSnapshotRetry"/>).</summary>
    private static readonly TimeSpan RememberAnswersFor = TimeSpan.FromMinutes(1);
    private readonly TimeProvider _clock;
    private readonly TimeSpan _housekeepingInterval;
    private readonly TimeSpan _presenceTimeout;
    /// <summary>Fan-outs go at most once per window (<see cref="Control.ControlSettings.FanOutCoalesceMilliseconds"/>).</summary>
    private readonly TimeSpan _coalesceWindow;
    /// <summary>When the last fan-out went (a <see cref="System.Diagnostics.Stopwatch"/> timestamp; 0 before the first).</summary>
    private long _lastFlushAt;
    private readonly DeltaAccumulator _pending = new();
    private readonly FanOutNumbering _numbering;

    /// <summary>Peers' nodes as full maps carry them, encoded once per change of the peer, not once per map.</summary>
    private readonly EncodedPeerNodes _encodedPeers = new();

    /// <summary>How many bytes one page of a device listing may take (half this node's remote frame limit).</summary>
    private readonly int _pageBudget = DevicePages.WireBudgetOf(Context.System.Settings.Config);
    /// <summary>The traced command whose changes the next flush carries (the first, when several coalesce).</summary>
    private System.Diagnostics.ActivityContext? _flushCause;
    /// <summary>When each device online was last heard from.</summary>
    private readonly Dictionary<string, Moment> _online = new();
    /// <summary>Since when each ephemeral device offline has been.</summary>
    private readonly Dictionary<string, Moment> _offlineEphemeral = new();

    /// <summary>
    /// A moment by the monotonic clock, which times presence and ephemeral removal, and by the wall clock,
    /// which is what is stored (last seen). A wall clock stepped forward (a VM resumed, NTP) must not time
    /// every device out at once, and then delete every connected ephemeral device as offline since.
    /// </summary>
    private readonly record struct Moment(long Timestamp, DateTimeOffset At);

    private Moment Now() => new(_clock.GetTimestamp(), _clock.GetUtcNow());

    private TimeSpan Since(Moment moment) => _clock.GetElapsedTime(moment.Timestamp);

    /// <summary>A span in the clock's timestamp units.</summary>
    private long Ticks(TimeSpan span) => (long)(span.TotalSeconds * _clock.TimestampFrequency);
    private IActorRef? _devices;
    private IActorRef? _machines;

    /// <summary>
    /// The device region and the machine index, looked up when first needed, not at start: a remembered
    /// tailnet can start (its shard placed on a node that is starting) before those regions are
    /// registered, and a reference taken then would drop every delta until the tailnet restarted.
    /// </summary>
    private IActorRef Devices => (_devices ??= Registered<DeviceActor>()) ?? ActorRefs.Nobody;

    private IActorRef Machines => (_machines ??= Registered<MachineIndexActor>()) ?? ActorRefs.Nobody;

    /// <summary>The registered actor, or null while it is not registered yet (looked up again next time).</summary>
    private IActorRef? Registered<T>() => ActorRegistry.For(Context.System).TryGet<T>(out var actor) ? actor : null;
    private bool _flushScheduled;
    // Asked its shard to stop it (an inactive tailnet); the stop message is on its way.
    private bool _passivating;
    private PolicyEngine? _engine;

    public TailnetActor(string tailnetId, PersistenceSettings settings, TimeProvider clock, Control.ControlSettings control)
        : base(settings, TailnetState.Unborn(tailnetId))
    {
        _clock = clock;
        _numbering = new FanOutNumbering(clock);
        _housekeepingInterval = TimeSpan.FromSeconds(control.HousekeepingSeconds);
        _presenceTimeout = TimeSpan.FromSeconds(control.PresenceTimeoutSeconds);
        _coalesceWindow = TimeSpan.FromMilliseconds(control.FanOutCoalesceMilliseconds);
        PersistenceId = PersistenceIdOf(tailnetId);
    }

    public override string PersistenceId { get; }

    public ITimerScheduler Timers { get; set; } = null!;

    public static string PersistenceIdOf(string tailnetId) => "tailnet-" + tailnetId;

    public static Props PropsFor(string tailnetId, PersistenceSettings settings, TimeProvider? clock = null, Control.ControlSettings? control = null) =>
        Props.Create(() => new TailnetActor(tailnetId, settings, clock ?? TimeProvider.System, control ?? new Control.ControlSettings()));

    protected override void PreStart()
    {
        base.PreStart();
        Timers.StartPeriodicTimer("housekeeping", Housekeeping.Instance, _housekeepingInterval);
    }

    private bool IsOnline(string deviceId) => _online.ContainsKey(deviceId);

    /// <summary>The compiled policy, kept in step with the state event by event (compiled in full on recovery).</summary>
    private PolicyEngine Engine => _engine ??= PolicyEngine.Compile(State.Policy, State.PolicyDevices());

    protected override TailnetState Apply(TailnetState state, ITailnetEvent @event) => state.Apply(@event);

    protected override bool IsCommand(object message) => message is ITailnetCommand;

    protected override Decision<ITailnetEvent> Decide(TailnetState state, object command) => command switch
    {
        // Decided when its write comes up, which can be after the device came back: online now, it stays.
        RemoveEphemeralDevice c when IsOnline(c.DeviceId) => Decision<ITailnetEvent>.Unchanged,
        _ => state.Process((ITailnetCommand)command),
    };

    protected override bool TryAnswer(TailnetState state, object message, out object reply)
    {
        reply = message switch
        {
            GetTailnet => state.IsActive ? state.ToInfo() : state.NotFound(),
            GetTailnetPlacement => new TailnetPlacement(state.TailnetId, Akka.Cluster.Cluster.Get(Context.System).SelfAddress.ToString()),
            _ when !state.IsActive && message is ITailnetMessage and not ITailnetCommand and not DeviceOnline and not SendNetMap and not DeviceReportedAgain => state.NotFound(),
            ListUsers => new UserList(state.Users.Values.ToList()),
            ListAuthKeys => new AuthKeyList(state.AuthKeys.Values.ToList()),
            ListDevices list => DevicePages.Page(state.Devices, list, IsOnline, _pageBudget),
            GetDeviceNamed named => state.Devices.Values.FirstOrDefault(d => d.Name == named.Name) is { } found
                ? new DeviceInfo(found, IsOnline(found.DeviceId))
                : Rejection.NotFound($"device '{named.Name}' does not exist"),
            GetDevice get => state.Devices.TryGetValue(get.DeviceId, out var device)
                ? new DeviceInfo(device, IsOnline(device.DeviceId))
                : Rejection.NotFound($"device {get.DeviceId} does not exist"),
            GetNetMap get => state.Devices.ContainsKey(get.DeviceId)
                ? new NetMapSnapshot(state.TailnetId, get.DeviceId, NetMapBuilder.BuildEncoded(state, get.DeviceId, Engine, IsOnline, _encodedPeers))
                : Rejection.NotFound($"device {get.DeviceId} does not exist"),
            GetMesh => MeshOf(state),
            GetPolicy => state.PolicyInfo(),
            GetSso => state.SsoInfo(),
            GetDeviceLogin get => state.LoginInfo(get),
            ValidatePolicy validate => state.Validate(validate.Text),
            CheckAccess check => state.CheckAccess(check),
            CheckRelayAccess check => state.RelayAccessFor(check.NodeKeys),
            _ => null!,
        };
        return reply is not null;
    }

    protected override object Acknowledge(object command, TailnetState stateAfter) => command switch
    {
        CreateTailnet or ChangeTailnetSettings => stateAfter.ToInfo(),
        SetPolicy => stateAfter.PolicyInfo(),
        SetSso or RemoveSso => stateAfter.SsoInfo(),
        DeleteTailnet => new TailnetDeletedAck(stateAfter.TailnetId),
        CreateUser c => new UserInfo(stateAfter.Users[c.UserId]),
        DeleteUser c => new UserInfo(new TailnetUser(c.UserId, "", default)),
        SetUserRole c => new UserInfo(stateAfter.Users[c.UserId]),
        SignInUser c => new UserInfo(stateAfter.UserFor(c.Identity)!),
        CreateAuthKey c => new AuthKeyInfo(stateAfter.AuthKeys[c.KeyId]),
        RevokeAuthKey c => new AuthKeyInfo(stateAfter.AuthKeys[c.KeyId]),
        RegisterDevice c => RegistrationOf(stateAfter, c),
        CompleteDeviceLogin c => stateAfter.Logins[c.LoginId] is { UsedBy: { } userId } login
            ? new DeviceLoginDone(stateAfter.TailnetId, stateAfter.Devices[login.DeviceId], stateAfter.Users[userId])
            : throw new InvalidOperationException("a completed login without its user"),
        DeleteDevice c => new DeviceDeletedAck(stateAfter.TailnetId, c.DeviceId),
        DeletePendingDevices c => new PendingDevicesDeleted(stateAfter.TailnetId, c.DeviceIds.Distinct().Where(id => !stateAfter.Devices.ContainsKey(id)).ToList()),
        RemoveEphemeralDevice c => new DeviceDeletedAck(stateAfter.TailnetId, c.DeviceId),
        ExpireDueKeys or ForgetAbandonedSignIns or ForgetSpentAuthKeys => stateAfter.ToInfo(),
        ITailnetDeviceCommand c => DeviceInfoAfter(stateAfter, c.DeviceId),
        _ => throw new InvalidOperationException(command.GetType().Name),
    };

    /// <summary>The device as the registration left it, with the login link it waits on (if it signs in).</summary>
    private static DeviceRegistration RegistrationOf(TailnetState state, RegisterDevice c)
    {
        // The device it resumed or made, else the machine's device it found (a machine key has one device in a
        // tailnet): by id first, as walking a tailnet of thousands for the machine key costs more than the registration.
        var device = state.Devices.TryGetValue(c.ResumeDeviceId ?? c.NewDeviceId, out var known) && known.MachineKey == c.MachineKey ? known : state.FindByMachineKey(c.MachineKey)!;
        return new DeviceRegistration(state.TailnetId, device) { Login = state.OpenLoginFor(device.DeviceId, c.NodeKey, c.At) };
    }

    private object DeviceInfoAfter(TailnetState state, string deviceId) =>
        state.Devices.TryGetValue(deviceId, out var device) ? new DeviceInfo(device, IsOnline(deviceId)) : Rejection.NotFound($"device {deviceId} does not exist");

    /// <summary>The changes an operator reads in the log (the entity's path names the tailnet: Hosting/CoordinatorLogging).</summary>
    private void LogChange(ITailnetEvent @event, TailnetState after)
    {
        switch (@event)
        {
            case TailnetCreated:
                Log.Info("Tailnet {0} created", after.TailnetId);
                break;
            case DeviceRegistered registered:
                Log.Info("Device {0} ({1}) registered, {2}", registered.Device.Name, registered.Device.DeviceId, registered.Device.Status.ToString().ToLowerInvariant());
                break;
            case DeviceApproved approved:
                Log.Info("Device {0} approved", approved.DeviceId);
                break;
            case DeviceLoginStarted started:
                Log.Info("Device {0} waits for its person to sign in (login {1}, open until {2:u})", started.Login.DeviceId, started.Login.LoginId, started.Login.ExpiresAt);
                break;
            case DeviceLoginCompleted completed:
                Log.Info("Login {0} signed in as {1}", completed.LoginId, after.Users[completed.UserId].Name);
                break;
            case DeviceExpired expired:
                Log.Info("Device {0} expired: it must log in again", expired.DeviceId);
                break;
            case DeviceDeleted deleted:
                Log.Info("Device {0} deleted", deleted.DeviceId);
                break;
            case PolicyChanged changed:
                Log.Info("Policy version {0} in force", changed.Version);
                break;
            case SsoConfigured configured:
                Log.Info("Sign-in through {0} (client {1}) configured", configured.Settings.Issuer, configured.Settings.ClientId);
                break;
            case SsoRemoved:
                Log.Info("Sign-in through an identity provider removed");
                break;
        }
    }

    protected override void OnEventsPersisted(IReadOnlyList<ITailnetEvent> events, TailnetState before, TailnetState after)
    {
        // The engine follows the events one by one from the state they were decided on.
        _engine ??= PolicyEngine.Compile(before.Policy, before.PolicyDevices());
        var state = before;
        List<string>? revoked = null;
        foreach (var @event in events)
        {
            var next = state.Apply(@event);
            PeerFanOut.Collect(@event, state, next, Engine.Follow(@event, next), Engine, IsOnline, _pending);
            LogChange(@event, next);
            switch (@event)
            {
                case DeviceRegistered { Device.Ephemeral: true } registered when !IsOnline(registered.Device.DeviceId):
                    // Offline until its session attaches: an ephemeral device that registers and never
                    // subscribes is removed like one that disconnected.
                    _offlineEphemeral[registered.Device.DeviceId] = Now();
                    break;
                case DeviceDeleted deleted when state.Devices.TryGetValue(deleted.DeviceId, out var gone):
                    (revoked ??= []).Add(gone.NodeKey);
                    Release(gone, "this device was deleted from the tailnet");
                    _online.Remove(gone.DeviceId);
                    _offlineEphemeral.Remove(gone.DeviceId);
                    if (_relearning.Remove(gone.DeviceId) && _relearning.Count == 0) EndRelearning();
                    break;
                case DeviceExpired expired when state.Devices.TryGetValue(expired.DeviceId, out var lapsed):
                    (revoked ??= []).Add(lapsed.NodeKey);
                    break;
                case TailnetDeleted:
                    foreach (var device in state.Devices.Values) Release(device, "the tailnet was deleted");
                    (revoked ??= []).AddRange(state.Devices.Values.Select(d => d.NodeKey));
                    break;
            }
            state = next;
        }
        // The relays let a ticket in until it expires: these keys' tickets stop now.
        if (revoked is not null) Relays.RelayAccessRevoker.Broadcast(Context, revoked, _clock.GetUtcNow());
        // A deleted tenant's data goes from the store too, not only from the state (see TailnetState.Tombstone).
        if (after.Lifecycle == TailnetLifecycle.Deleted && before.Lifecycle != TailnetLifecycle.Deleted && !KeepsAllEvents) ForgetHistory(after);
        // The fan-out that these changes join is traced under the command that caused them (admin API → entity → deltas).
        if (System.Diagnostics.Activity.Current is { } cause && _flushCause is null) _flushCause = cause.Context;
        ScheduleFlush();
    }

    /// <summary>
    /// A device left the tailnet: its machine key is free for a new registration, and its entity ends
    /// the session (now, or whenever one attaches). The one path by which a removal reaches a device.
    /// </summary>
    private void Release(DeviceEntry device, string reason)
    {
        Machines.Tell(new UnbindMachine(device.MachineKey, device.DeviceId));
        Devices.Tell(new MarkDeviceRemoved(device.DeviceId, reason));
    }

    protected override bool HandleOther(object message)
    {
        switch (message)
        {
            case DeviceOnline presence:
                OnPresence(presence);
                return true;
            case UpdateDeviceEndpoints report:
                OnEndpointsReported(report);
                return true;
            case SendNetMap send:
                if (AlreadyAnswered(send))
                {
                    Telemetry.CoordinatorMetrics.FullMapRequests.Add(1, Telemetry.CoordinatorMetrics.Repeat);
                    return true;
                }
                if (_relearning.Count > 0) _heldFullMaps[send.DeviceId] = send.Need;
                else SendFullMap(send.DeviceId, send.Need);
                return true;
            case DeviceReportedAgain reported:
                if (_relearning.Remove(reported.DeviceId) && _relearning.Count == 0) EndRelearning();
                return true;
            case RelearnOverdue:
                if (_relearning.Count > 0)
                    Log.Info("Tailnet {0}: {1} device(s) did not report again within {2}; full maps go out without them", State.TailnetId, _relearning.Count, RelearnDeadline);
                EndRelearning();
                return true;
            case Flush:
                _flushScheduled = false;
                _lastFlushAt = System.Diagnostics.Stopwatch.GetTimestamp();
                FlushPending();
                return true;
            case Housekeeping:
                Housekeep();
                return true;
            default:
                return false;
        }
    }

    /// <param name="silentSince">For a device timed out here: when it was last heard from (its offline time).</param>
    private void OnPresence(DeviceOnline presence, Moment? silentSince = null)
    {
        // A heartbeat from a session that should have ended: the end (or the removal) went to the device's
        // entity while it had no session or was moving, or this incarnation died between the change and its
        // fan-out. The heartbeat is the next chance to end it, and comes every re-attach period until it is.
        if (!State.Devices.TryGetValue(presence.DeviceId, out var device) || !State.IsActive)
        {
            // The entity stores the removal when told the device is deleted, so its agent is refused from then on.
            if (presence.Online) TellDevice(new PeerChanges(presence.DeviceId, [], false, Weft.Contracts.Control.ControlErrorCodes.DeviceDeleted, NotInTailnet));
            return;
        }
        if (presence.Online && device.Status == DeviceStatus.Expired)
        {
            TellDevice(new PeerChanges(device.DeviceId, [], false, Weft.Contracts.Control.ControlErrorCodes.DeviceExpired, TailnetRules.ExpiredDeviceMessage));
            return;
        }
        if (presence.Online && _numbering.Missed(device.DeviceId, presence.Heard))
        {
            // What this incarnation sent the entity last did not arrive (a later message would have shown it the gap):
            // it starts again from a full map, as after a resync, and reports its soft state again on the way.
            Log.Warning("Tailnet {0}: device {1}'s entity missed what was last sent to it; it starts again from a full map", State.TailnetId, device.DeviceId);
            Telemetry.CoordinatorMetrics.FanOutGaps.Add(1, Telemetry.CoordinatorMetrics.SeenByHeartbeat);
            // The lost message may have been a full map: the repeat of its need is answered again, not taken as on its way.
            _mapsAnswered.Remove(device.DeviceId);
            TellDevice(new PeerChanges(device.DeviceId, [], true, null, null));
        }
        // A device this incarnation still has as unknown, past its resync (the resync or the report that
        // answered it was lost on the way): its entity holds the endpoints, so ask for them again.
        else if (presence.HoldsEndpoints && device.EndpointsUnknown && !_relearning.Contains(device.DeviceId))
            Devices.Tell(new ReportEndpointsAgain(device.DeviceId));
        var was = _online.ContainsKey(device.DeviceId);
        if (presence.Online)
        {
            _online[device.DeviceId] = Now();
            _offlineEphemeral.Remove(device.DeviceId);
            if (was) return; // a heartbeat
        }
        else
        {
            if (!was)
            {
                // Online in an incarnation before this one (the tailnet moved, or its node died, as the device went): the
                // disconnect is still the device's last sighting, and nothing else will record it.
                if (device.LastSeen is not { } seen || seen < presence.At)
                    Submit(new RecordDeviceLastSeen(State.TailnetId, device.DeviceId, presence.At), ActorRefs.Nobody);
                return;
            }
            _online.Remove(device.DeviceId);
            Submit(new RecordDeviceLastSeen(State.TailnetId, device.DeviceId, presence.At), ActorRefs.Nobody);
            if (device.Ephemeral) _offlineEphemeral[device.DeviceId] = silentSince ?? Now() with { At = presence.At };
        }
        PeerFanOut.Presence(device.DeviceId, presence.Online, presence.At, Engine, _pending);
        ScheduleFlush();
    }

    /// <summary>
    /// Whether <paramref name="send"/> repeats a need this incarnation answered: its answer is on the way,
    /// in order with the changes that follow it. A forced repeat sent when the answer had had the time to
    /// arrive (<see cref="DeviceActor.DefaultSnapshotRetry"/> after it went out) says it did not, and is answered again.
    /// </summary>
    private bool AlreadyAnswered(SendNetMap send)
    {
        if (send.Need == 0 || !_mapsAnswered.TryGetValue(send.DeviceId, out var answered) || answered.Need != send.Need) return false;
        return send.ForcedAt is not { } sentAt || sentAt < answered.At + DeviceActor.DefaultSnapshotRetry;
    }

    private void SendFullMap(string deviceId, ulong need)
    {
        if (State.IsActive && State.Devices.ContainsKey(deviceId))
        {
            TellDevice(new NetMapSnapshot(State.TailnetId, deviceId, NetMapBuilder.BuildEncoded(State, deviceId, Engine, IsOnline, _encodedPeers)));
            _pending.Delivered(deviceId);
            if (need != 0) _mapsAnswered[deviceId] = (need, _clock.GetUtcNow());
            Telemetry.CoordinatorMetrics.FullMapRequests.Add(1, Telemetry.CoordinatorMetrics.Built);
        }
        else
            TellDevice(new PeerChanges(deviceId, [], false, Weft.Contracts.Control.ControlErrorCodes.DeviceDeleted, NotInTailnet));
    }

    /// <summary>The pairs that may reach each other, unless there are more than <see cref="MeshLinks.MaxLinks"/> (counting stops there).</summary>
    private MeshLinks MeshOf(TailnetState state)
    {
        var links = new List<MeshLink>();
        foreach (var a in state.Devices.Keys)
            foreach (var b in Engine.VisiblePeers(a))
            {
                if (string.CompareOrdinal(a, b) >= 0) continue;
                if (links.Count == MeshLinks.MaxLinks) return new MeshLinks([], Complete: false);
                links.Add(new MeshLink(a, b));
            }
        return new MeshLinks(links);
    }

    /// <summary>Sends the device's entity its next numbered message (see <see cref="FanOutStamp"/>): changes and full maps share one count.</summary>
    private void TellDevice(PeerChanges changes) => Devices.Tell(changes with { Stamp = _numbering.Next(changes.DeviceId) });

    private void TellDevice(NetMapSnapshot map) => Devices.Tell(map with { Stamp = _numbering.Next(map.DeviceId) });

    private string NotInTailnet => State.IsActive ? "this device is not in the tailnet" : "the tailnet was deleted";

    private void EndRelearning()
    {
        _relearning.Clear();
        Timers.Cancel(nameof(RelearnOverdue));
        foreach (var (deviceId, need) in _heldFullMaps) SendFullMap(deviceId, need);
        _heldFullMaps.Clear();
    }

    /// <summary>Endpoints are soft state (see the class comment): checked as a command is, applied and fanned out without a journal write.</summary>
    private void OnEndpointsReported(UpdateDeviceEndpoints report)
    {
        if (!State.IsActive)
        {
            Sender.Tell(State.NotFound());
            return;
        }
        var decision = State.Process(report);
        if (decision.Rejection is { } rejection)
        {
            Sender.Tell(rejection);
            return;
        }
        foreach (var @event in decision.Events)
        {
            var before = State;
            // A write in flight may delete the device: the change applies only where the device still is.
            ChangeSoftState(state => state.Devices.ContainsKey(report.DeviceId) ? state.Apply(@event).WithEndpointsReported(report.DeviceId, report.Version) : state);
            PeerFanOut.EndpointsReported(before, State, report.DeviceId, Engine, IsOnline, _pending);
        }
        Sender.Tell(DeviceInfoAfter(State, report.DeviceId));
        ScheduleFlush();
    }

    private void Housekeep()
    {
        if (!State.IsActive)
        {
            // A deletion's erasure that failed (a snapshot refused: the disk full, the store away) is tried again at each pass,
            // and the entity stays until it is done: once stopped, nothing starts a deleted tailnet again, and its data would stay.
            if (State.Lifecycle == TailnetLifecycle.Deleted && ForgettingFailed && !KeepsAllEvents)
            {
                Log.Warning("Tailnet {0} is deleted and erasing its stored history failed; trying again", State.TailnetId);
                ForgetHistory(State.Tombstone());
                return;
            }
            // Not while a command is being stored (a creation that lands would make it active), nor while its erasure is under way.
            if (!_passivating && !IsWriting && !IsForgetting)
            {
                Log.Info("Tailnet {0} is {1}: its entity stops and is not started again after a failover", State.TailnetId,
                    State.Lifecycle == TailnetLifecycle.Deleted ? "deleted" : "unknown");
                Context.Parent.Tell(new Akka.Cluster.Sharding.Passivate(StopEntity.Instance));
                _passivating = true;
            }
            return;
        }
        var now = _clock.GetUtcNow();
        // Entities on a node that died cannot say goodbye: their devices time out.
        foreach (var (deviceId, lastHeard) in _online.Where(kv => Since(kv.Value) > _presenceTimeout).ToList())
            OnPresence(new DeviceOnline(State.TailnetId, deviceId, false, lastHeard.At), lastHeard);
        // Each stays until its removal is stored (DeviceDeleted takes it out) or the device is back: a removal the
        // journal rejected is submitted again at the next pass, instead of leaving the device for good.
        foreach (var (deviceId, offlineSince) in _offlineEphemeral.Where(kv => Since(kv.Value) >= State.Settings.EphemeralTimeout).ToList())
        {
            if (State.Devices.TryGetValue(deviceId, out var device) && device.Ephemeral)
                Submit(new RemoveEphemeralDevice(State.TailnetId, deviceId, offlineSince.At), ActorRefs.Nobody);
            else
                _offlineEphemeral.Remove(deviceId);
        }
        if (State.Devices.Values.Any(d => d.KeyLapsedBy(now)))
            Submit(new ExpireDueKeys(State.TailnetId, now), ActorRefs.Nobody);
        if (State.AbandonedSignIns(now).Count > 0) Submit(new ForgetAbandonedSignIns(State.TailnetId, now), ActorRefs.Nobody);
        if (State.SpentAuthKeys(now).Any()) Submit(new ForgetSpentAuthKeys(State.TailnetId, now), ActorRefs.Nobody);
        _encodedPeers.Prune(State);
        _numbering.Prune(State.Devices.ContainsKey);
        foreach (var (deviceId, _) in _mapsAnswered.Where(kv => now - kv.Value.At > RememberAnswersFor).ToList()) _mapsAnswered.Remove(deviceId);
    }

    protected override void OnRecovered()
    {
        // A deletion whose erasure was cut off (or stored by a version that kept everything) is erased now.
        if (State.Lifecycle == TailnetLifecycle.Deleted && !KeepsAllEvents) ForgetHistory(State.Tombstone());
        _engine = PolicyEngine.Compile(State.Policy, State.PolicyDevices());
        foreach (var ignored in State.StoredPolicyWarnings())
            Log.Warning("Tailnet {0}: the stored policy is enforced without a section this version does not have (line {1}): {2}", State.TailnetId, ignored.Line, ignored.Message);
        if (State.IsActive) Log.Info("Tailnet {0} started with {1} device(s); presence is re-learned as their sessions re-attach", State.TailnetId, State.Devices.Count);
        // Nobody is known to be online yet. A connected device's session re-attaches well within the
        // presence timeout. An ephemeral device that has not is offline since its stored last sighting (a
        // disconnect; its registration if it never had one): counting every device from now, an incarnation
        // started more often than the timeout (daily deploys, a week's timeout) removed none. A device online
        // when the tailnet stopped has an older sighting, so none is removed before twice the presence timeout
        // (its session re-attaching, after a failover, through a join storm).
        var now = Now();
        var knownOffline = new Moment(now.Timestamp + Ticks(_presenceTimeout), now.At + _presenceTimeout);
        var earliest = now.Timestamp + Ticks(2 * _presenceTimeout) - Ticks(State.Settings.EphemeralTimeout);
        foreach (var device in State.Devices.Values.Where(d => d.Ephemeral))
        {
            var since = (device.LastSeen ?? device.CreatedAt) is var seen && seen < now.At
                ? new Moment(now.Timestamp - Ticks(now.At - seen), seen)
                : knownOffline;
            _offlineEphemeral[device.DeviceId] = since.Timestamp < earliest ? since with { Timestamp = earliest } : since;
        }
        // What the previous incarnation stored but had not sent yet (its coalescing window, a crash, a
        // handoff) went with it, and no version shows the gap: every device starts again from a full map.
        // The devices' entities report their soft state again before anyone gets a full map (see the class comment);
        // until a device has, netmaps mark its endpoints unknown rather than send the snapshot's.
        ChangeSoftState(state => state.WithEndpointsUnknown());
        foreach (var device in State.Devices.Values)
        {
            _pending.Resync(device.DeviceId);
            _relearning.Add(device.DeviceId);
        }
        if (_relearning.Count > 0) Timers.StartSingleTimer(nameof(RelearnOverdue), RelearnOverdue.Instance, RelearnDeadline);
        ScheduleFlush();
        // Keys that lapsed while no incarnation ran (a whole-cluster outage, a move) expire now, not a housekeeping interval from now.
        if (State.IsActive) Self.Tell(Housekeeping.Instance);
    }

    /// <summary>
    /// Changes go out together, at most once per coalescing window. After a quiet spell (the last fan-out
    /// a window or more ago) they go as soon as this entity has read what is already in its mailbox, which
    /// joins them too, so a lone change does not wait for a timer (whose tick is 10 ms or more). Within
    /// the window they wait for its end, so a busy tailnet still sends few, larger patches.
    /// </summary>
    private void ScheduleFlush()
    {
        if (_flushScheduled || _pending.RecipientCount == 0) return;
        _flushScheduled = true;
        var sinceLast = _lastFlushAt == 0 ? TimeSpan.MaxValue : System.Diagnostics.Stopwatch.GetElapsedTime(_lastFlushAt);
        if (sinceLast >= _coalesceWindow) Self.Tell(Flush.Instance);
        else Timers.StartSingleTimer("flush", Flush.Instance, _coalesceWindow - sinceLast);
    }

    private void FlushPending()
    {
        using var span = _flushCause is { } cause
            ? Telemetry.CoordinatorTracing.Source.StartActivity("tailnet netmap fan-out", System.Diagnostics.ActivityKind.Internal, cause)
            : null;
        _flushCause = null;
        var shared = new DeltaAccumulator.SharedEncodings();
        var recipients = 0;
        foreach (var (recipient, pending) in _pending.Drain())
        {
            recipients++;
            // An expiry ends the session only if it still holds when the window closes: a device re-authorized
            // within it keeps its session (and gets its full map below), and one deleted within it is ended by
            // its removal, with that reason.
            if (pending.End is { } end && State.Devices.TryGetValue(recipient, out var ending) && ending.Status == DeviceStatus.Expired)
            {
                TellDevice(new PeerChanges(recipient, [], false, end.Code, end.Message));
                continue;
            }
            // Every device still in the tailnet hears of every change, online or not (see the class comment).
            if (!State.Devices.ContainsKey(recipient) || pending.IsEmpty) continue;
            if (pending.Resync)
            {
                TellDevice(new PeerChanges(recipient, [], true, null, null));
                continue;
            }
            TellDevice(new PeerChanges(recipient, pending.ToDeltaBytes(shared), false, null, null));
        }
        span?.SetTag("weft.tailnet", State.TailnetId).SetTag("weft.recipients", recipients);
    }

    private sealed class Flush
    {
        public static readonly Flush Instance = new();
    }

    private sealed class RelearnOverdue
    {
        public static readonly RelearnOverdue Instance = new();
    }

    private sealed class Housekeeping
    {
        public static readonly Housekeeping Instance = new();
    }
}
