using System.Collections.Immutable;
using Akka.Actor;
using Akka.Event;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;

namespace Weft.NodeAgent.Control;

/// <summary>How a <see cref="ControlClient"/> finds and joins its tailnet.</summary>
public sealed record ControlClientOptions
{
    /// <summary>Coordinator control URLs, tried in turn; any node of the cluster serves any agent.</summary>
    public required IReadOnlyList<Uri> Coordinators { get; init; }
    public required IAgentStateStore StateStore { get; init; }
    public required string Hostname { get; init; }
    /// <summary>Used to join; once the device exists it is sent again only with <see cref="ForceReauth"/>.</summary>
    public string? AuthKey { get; init; }
    /// <summary>Re-authorise an existing device with <see cref="AuthKey"/> (after its key expired, or to change its owner or tags).</summary>
    public bool ForceReauth { get; init; }
    /// <summary>The tailnet to wait in for approval when there is no auth key.</summary>
    public string? Tailnet { get; init; }
    public string Os { get; init; } = OperatingSystem.IsLinux() ? "linux" : Environment.OSVersion.Platform.ToString().ToLowerInvariant();
    public string AgentVersion { get; init; } = typeof(ControlClient).Assembly.GetName().Version?.ToString() ?? "dev";
    public ImmutableArray<string> Endpoints { get; init; } = [];
    /// <summary>
    /// The routes this device offers (<c>--advertise-routes</c>, and 0.0.0.0/0 and ::/0 for
    /// <c>--advertise-exit-node</c>), reported on every session; default: none reported (simulated agents).
    /// </summary>
    public ImmutableArray<string> AdvertisedRoutes { get; init; }
    public TimeSpan MinBackoff { get; init; } = TimeSpan.FromMilliseconds(500);
    /// <summary>How long a state the file could not take (a full disk) waits before it is written again, and a rotation put off by it before it is tried again.</summary>
    public TimeSpan StateRetryInterval { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>The longest wait between attempts on one URL: below the time the cluster needs to down a dead node (akka.hocon).</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>After this long without a netmap message, the client asks the coordinator to confirm the version it holds.</summary>
    public TimeSpan VerifyAfter { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>A subscribe or verification unanswered this long means the stream is stale: the client reconnects.</summary>
    public TimeSpan AnswerTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>How long before expiry the node key rotates; default a quarter of its lifetime, at most a day.</summary>
    public TimeSpan? RotationLead { get; init; }
    /// <summary>Lets many simulated agents share one HTTP/2 connection per coordinator (each still has its own stream).</summary>
    public Func<Uri, GrpcChannel>? SharedChannels { get; init; }
    /// <summary>Called on the actor's thread after every netmap or delta is applied (benchmarks measure propagation here).</summary>
    public Action<ServerMessage, NetMapApplied, NetMapStore>? Observer { get; init; }
    /// <summary>
    /// What the netmap store keeps of each peer (null: the whole node). The load tester's thin agents
    /// keep only what its checks read, so that tens of thousands of them fit in one process; an agent
    /// with a data plane needs every field.
    /// </summary>
    public Func<Node, Node>? PeerRecord { get; init; }
    public TimeProvider Clock { get; init; } = TimeProvider.System;
    /// <summary>Start as <c>down</c> left it (the daemon's prefs say so): no stream until <c>up</c>.</summary>
    public bool StartStopped { get; init; }
    /// <summary>Keeps the last netmap on disk (the agent daemon); null for simulated agents.</summary>
    public INetMapCache? NetMapCache { get; init; }
}

/// <summary>
/// The agent's link to the coordination cluster, as Tailscale's <c>controlclient.Auto</c> is: it owns
/// the states and the retries, and delegates the rest. <see cref="ControlConnection"/> speaks the
/// wire (Noise, sealed frames); <see cref="CoordinatorDialer"/> decides which coordinator to dial and
/// when; <see cref="NetMapSession"/> turns a stream's maps and deltas into the netmap and detects
/// gaps; <see cref="NodeKeyRotation"/> says when the node key rotates; <see cref="NetMapCacheWriter"/>
/// writes the cache off this actor's thread. Keys live in the agent state (file mode 0600).
/// <para>
/// States (<c>Become</c>): connecting (dialling, or waiting to), registering (stream open, register
/// sent), registered (running or waiting for approval: the netmap streams in), stopped (<c>down</c>)
/// and needs-login (refused for good, or logged out). Watchers (the data plane, tests) register once;
/// a restart of this actor registers them again, and they get the current state at once.
/// </para>
/// </summary>
public sealed class ControlClient : ReceiveActor, IWithTimers, IWithUnboundedStash
{
    private static readonly TimeSpan MaxTimerDelay = TimeSpan.FromHours(12);
    /// <summary>Netmap writes to the cache are coalesced: a burst of deltas costs one write.</summary>
    private static readonly TimeSpan CacheWriteDelay = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan LogoutTimeout = TimeSpan.FromSeconds(10);

    private readonly ControlClientOptions _options;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly NetMapSession _session;
    private CoordinatorDialer? _dialer;
    // Where and how to join: from the options, then from each LogIn (up, login, set).
    private ControlLogin _login;
    private readonly HashSet<IActorRef> _watchers = [];
    private readonly CancellationTokenSource _stopping = new();
    /// <summary>
    /// The disco key, one per agent process as Tailscale's: a restarted incarnation takes its predecessor's
    /// (<see cref="Resume"/>). A new one would stop every path finder and drop each direct path to the relay
    /// until the coordinator had told every peer the new key, and for good while no coordinator answers.
    /// </summary>
    private Curve25519PrivateKey _disco = Curve25519PrivateKey.Generate();
    private AgentState _state = null!;
    /// <summary>The state file could not take <see cref="_state"/> yet (see <see cref="Save"/>).</summary>
    private bool _stateUnsaved;
    /// <summary>A rotation could not keep its next key: the next <see cref="RotationDue"/> starts it again.</summary>
    private bool _rotationPutOff;
    /// <summary>Which dial is the current one (<see cref="OnDial"/>); from a random start, so a predecessor's late answer is not taken for this incarnation's.</summary>
    private int _dialGeneration = Random.Shared.Next();
    private Curve25519PrivateKey _machine = null!;
    // Registered without a key and not approved yet: no netmap stream, the registration is repeated instead.
    private bool _awaitingApproval;
    /// <summary>The login link the coordinator gave while this device waits for its person to sign in.</summary>
    private string? _loginUrl;
    private Curve25519PrivateKey _node = null!;
    private Curve25519PrivateKey? _nextNode;
    private ControlConnection? _connection;
    private NetMapCacheWriter? _cacheWriter;
    // After a restart: the previous incarnation's cache writes, which this one's writer waits for.
    private Task? _previousWrites;
    private bool _useAuthKey;
    private TimeSpan _lastHeard;
    private ImmutableArray<string> _endpoints;
    private int _homeRelay;
    private ControlState _status = ControlState.Connecting;
    private string? _code;
    private string _detail = "starting";
    private IActorRef? _loggingOut;
    private RelayAccessChanged? _relayAccess;

    public ControlClient(ControlClientOptions options)
    {
        _options = options;
        _login = new ControlLogin(options.Coordinators, options.Hostname, options.Tailnet, options.AuthKey, options.ForceReauth, options.AdvertisedRoutes);
        _dialer = NewDialer(_login);
        _session = new NetMapSession(options.VerifyAfter, options.AnswerTimeout, options.PeerRecord);
        _endpoints = options.Endpoints;
        Connecting();
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public IStash Stash { get; set; } = null!;

    // Restarted, and the predecessor's Resume not taken yet (see AroundReceive).
    private bool _awaitingResume;

    public static Props PropsFor(ControlClientOptions options) => Props.Create(() => new ControlClient(options));

    /// <summary>Wall time, for what is stored: when a node key was issued, and so when it is due.</summary>
    private DateTimeOffset Now => _options.Clock.GetUtcNow();

    /// <summary>
    /// The monotonic clock, for every silence, wait and backoff: a wall clock stepped forward (a resumed VM,
    /// an NTP step) must not end a live stream as silent, nor one stepped back hide a dead stream or delay a redial.
    /// </summary>
    private TimeSpan MonotonicNow => _options.Clock.GetElapsedTime(0);

    /// <summary>How often the stream is checked for silence and the netmap for a needed verification.</summary>
    private TimeSpan CheckInterval => TimeSpan.FromTicks(Math.Min(ControlProtocol.SilenceLimit.Ticks / 3,
        Math.Min(_options.VerifyAfter.Ticks, _options.AnswerTimeout.Ticks) / 2));

    protected override void PreStart()
    {
        TakeKeysOf(_options.StateStore.Load());
        _useAuthKey = _state.DeviceId is null || (_login.ForceReauth && _login.AuthKey is not null);
        if (_options.NetMapCache is { } cache)
        {
            if (_state.DeviceId is not null && _session.LoadCached(cache.Load()))
            {
                _log.Info("Loaded the cached netmap v{0} ({1} peers)", _session.Store.Version, _session.Store.PeerCount);
                LearnCoordinatorsOfLoadedMap();
            }
        }
        Timers.StartPeriodicTimer("check", Check.Instance, CheckInterval);
        if (!_login.HasCoordinators || (_options.StartStopped && _state.DeviceId is null)) NeedsLogin(ControlErrorCodes.NotLoggedIn, NotLoggedInDetail);
        else if (_options.StartStopped) Stop();
        else ScheduleDial(TimeSpan.Zero);
    }

    private const string NotLoggedInDetail = "not logged in: run weft-agent up --login-server <coordinator URL> --auth-key <key>";

    /// <summary>
    /// The new incarnation starts from the options: it forgets its watchers and the logins since
    /// (up, login, set), whether it was down, and the endpoints and home relay the data plane found.
    /// Messages to Self reach the new one, so it is told them again; the device and keys it re-reads
    /// from the state file. The endpoints matter because the data plane reports them only when they
    /// change (or at its next STUN probe, and never without relays): a new stream that reported none
    /// would leave the coordinator with nothing to re-learn them from once its device entity moves.
    /// </summary>
    protected override void PreRestart(Exception reason, object message)
    {
        // Before its first dial fires (a timer), the new incarnation takes the login and the idle state
        // back, and this incarnation's netmap: the cache it loads as it starts can be older (it is
        // written half a second after a change, off this thread, and not at all when the disk fails),
        // and the watchers told again below must never be handed a map older than the one they hold.
        var latest = _session.Store.HasMap ? _session.Store.ToNetMap() : null;
        // This incarnation's cache writes finish first (the new one's writer waits for them), and not over the new one's.
        var previousWrites = _cacheWriter?.DisposeAsync().AsTask() ?? _previousWrites;
        _cacheWriter = null;
        Self.Tell(new Resume(_login, Idle ? _status : null, _code, _detail, _endpoints, _homeRelay, latest, previousWrites, _disco.ToHex(), _relayAccess,
            _stateUnsaved ? _state : null));
        foreach (var watcher in _watchers) Self.Tell(new WatchControl(watcher));
        // A logout under way: its asker (the CLI) waits for an answer that this incarnation's stream would
        // have brought. The successor takes the request again, and finishes it.
        if (_loggingOut is { } asker) Self.Tell(LogOut.Instance, asker);
        base.PreRestart(reason, message);
    }

    protected override void PostRestart(Exception reason)
    {
        base.PostRestart(reason);
        _awaitingResume = true;
    }

    /// <summary>
    /// After a restart, nothing is handled before the <see cref="Resume"/> the previous incarnation sent:
    /// it could only send it behind what was already in the mailbox, and a <c>down</c>, <c>up</c>,
    /// <c>set</c> or <c>logout</c> that came while it failed is newer than what Resume hands over. Taken
    /// first, Resume would undo it (a <c>down</c> brought straight back up); those wait, then follow it.
    /// </summary>
    protected override bool AroundReceive(Receive receive, object message)
    {
        if (!_awaitingResume) return base.AroundReceive(receive, message);
        if (message is not Resume)
        {
            Stash.Stash();
            return true;
        }
        _awaitingResume = false;
        var handled = base.AroundReceive(receive, message);
        Stash.UnstashAll();
        return handled;
    }

    private CoordinatorDialer? NewDialer(ControlLogin login) =>
        login.HasCoordinators ? new CoordinatorDialer(login.Coordinators, _options.MinBackoff, _options.MaxBackoff) : null;

    protected override void PostStop()
    {
        _stopping.Cancel();
        if (_connection is { } connection) _ = connection.DisposeAsync().AsTask();
        if (_cacheWriter is { } writer) _ = writer.DisposeAsync().AsTask();
        _machine?.Dispose();
        _node?.Dispose();
        _nextNode?.Dispose();
        _disco.Dispose();
    }

    // ------------------------------------------------------------------ states

    /// <summary>No stream: dialling, or waiting to dial again.</summary>
    private void Connecting()
    {
        Receive<Dial>(OnDial);
        Receive<Connected>(connected => connected.Generation == _dialGeneration, OnConnected);
        Receive<DialFailed>(failed => failed.Generation == _dialGeneration, OnDialFailed);
        Always();
    }

    /// <summary>A stream is open and the register request sent (again every so often while the device waits for approval).</summary>
    private void Registering()
    {
        Receive<Arrived>(IsCurrent, OnArrived);
        Receive<Broken>(IsCurrent, OnBroken);
        Receive<RegisterAgain>(_ => SendRegister());
        Always();
    }

    /// <summary>Registered (running, or waiting for an admin's approval): the netmap streams in.</summary>
    private void Registered()
    {
        Receive<Arrived>(IsCurrent, OnArrived);
        Receive<Broken>(IsCurrent, OnBroken);
        Receive<RotateNodeKeyNow>(_ => StartRotation());
        Receive<RotationDue>(_ =>
        {
            if (_rotationPutOff) StartRotation();
            else if (_session.Store.Self?.KeyExpiry is { } expiry) ScheduleRotation(expiry.ToDateTimeOffset());
        });
        Always();
    }

    /// <summary>Turned off (<c>weft-agent down</c>) until <c>up</c> (a <see cref="LogIn"/> that connects).</summary>
    private void Stopped() => Always();

    /// <summary>Not logged in yet, refused for good, or logged out: <c>up</c> or <c>login</c> (a <see cref="LogIn"/>) is needed.</summary>
    private void NeedingLogin() => Always();

    /// <summary>What every state answers.</summary>
    private void Always()
    {
        Receive<Check>(_ => OnCheck());
        Receive<GetAgentStatus>(_ => Sender.Tell(Status()));
        Receive<WatchControl>(watch =>
        {
            _watchers.Add(watch.Watcher);
            Context.Watch(watch.Watcher);
            watch.Watcher.Tell(new NodeKeyChanged(_node.ToHex(), Rotated: false));
            watch.Watcher.Tell(new DiscoKeyChanged(_disco.ToHex()));
            if (_relayAccess is not null) watch.Watcher.Tell(_relayAccess);
            watch.Watcher.Tell(new ControlStateChanged(_status, _code, _detail));
            if (_session.Store.HasMap) watch.Watcher.Tell(new NetMapChanged(_session.Store.View, NetMapApplied.Replaced));
        });
        Receive<Terminated>(terminated => _watchers.Remove(terminated.ActorRef));
        Receive<SetEndpoints>(OnSetEndpoints);
        Receive<SaveNetMap>(_ => SaveCache());
        Receive<SaveStateAgain>(_ => Save(_state, force: true));
        Receive<TakeDown>(_ => Stop());
        Receive<Reconnect>(reconnect =>
        {
            if (Idle) return;
            GoConnecting(reconnect.After, null, "reconnecting");
        });
        Receive<LogOut>(_ => OnLogOut());
        Receive<LogIn>(OnLogIn);
        Receive<Resume>(OnResume);
        Receive<LogoutTimedOut>(_ => FinishLogout(coordinatorTold: false, "the coordinator did not confirm in time; this agent forgot the device anyway"));
        // Answers from connections given up on, and requests that need a registration.
        Receive<Connected>(stale => _ = stale.Connection.DisposeAsync().AsTask());
        Receive<Arrived>(_ => { });
        Receive<Broken>(_ => { });
        Receive<DialFailed>(_ => { });
        Receive<Dial>(_ => { });
        Receive<RotateNodeKeyNow>(_ => { });
        Receive<RotationDue>(_ => { });
        Receive<RegisterAgain>(_ => { });
    }

    /// <summary>Not dialling on purpose: refused for good, logged out, or turned off.</summary>
    private bool Idle => _status.IsIdle();

    private bool IsCurrent(Arrived arrived) => ReferenceEquals(arrived.Connection, _connection);

    private bool IsCurrent(Broken broken) => ReferenceEquals(broken.Connection, _connection);

    // ------------------------------------------------------------------ connecting

    /// <summary>Drops any stream and dials the next coordinator after <paramref name="after"/> (plus what the dialer wants).</summary>
    private void GoConnecting(TimeSpan after, string? code, string detail)
    {
        DropConnection();
        _dialGeneration++; // a dial still under way belongs to what this starts over from
        SetStatus(ControlState.Connecting, code, detail);
        Become(Connecting);
        ScheduleDial(after);
    }

    private void ScheduleDial(TimeSpan atLeast)
    {
        if (_dialer is null) return;
        var (url, wait) = _dialer.Next(MonotonicNow);
        Timers.StartSingleTimer("dial", new Dial(url), wait > atLeast ? wait : atLeast);
    }

    private void OnDial(Dial dial)
    {
        if (_connection is not null) return;
        var self = Self;
        var shared = _options.SharedChannels?.Invoke(dial.Url);
        // Only the latest dial's outcome counts: an earlier one (to the coordinator `up --login-server` just moved
        // away from) would send the new login to the old cluster, pin its key, and count against the new one's backoff.
        var generation = ++_dialGeneration;
        ControlConnection.OpenAsync(dial.Url, _machine, PinnedCoordinatorKey, _options.Clock, shared, _stopping.Token)
            .ContinueWith(task => task.IsCompletedSuccessfully
                    ? (object)new Connected(task.Result, generation)
                    : new DialFailed(dial.Url, task.Exception?.GetBaseException() ?? new OperationCanceledException(), generation),
                TaskScheduler.Default)
            .PipeTo(self);
    }

    private Curve25519PublicKey? PinnedCoordinatorKey =>
        _state.CoordinatorKey is { } hex && Curve25519PublicKey.TryParseHex(hex, out var key) ? key : null;

    private void OnDialFailed(DialFailed failed)
    {
        if (failed.Error is ControlConnectException { Permanent: true } permanent)
        {
            NeedsLogin(permanent.Code, permanent.Message);
            return;
        }
        var known = failed.Error as ControlConnectException;
        _dialer?.Failed(failed.Url, MonotonicNow, known?.RetryAfter);
        SetStatus(ControlState.Connecting, known?.Code ?? ControlErrorCodes.Unavailable, $"cannot reach {failed.Url}: {failed.Error.Message}");
        ScheduleDial(TimeSpan.Zero);
    }

    private void OnConnected(Connected connected)
    {
        var connection = connected.Connection;
        if (_connection is not null)
        {
            _ = connection.DisposeAsync().AsTask();
            return;
        }
        _connection = connection;
        _lastHeard = MonotonicNow;
        if (PinnedCoordinatorKey is null) Save(_state with { CoordinatorKey = connection.CoordinatorKey.ToHex() });
        StartReading(connection);
        SetStatus(ControlState.Registering, null, $"registering with {connection.Url}");
        SendRegister();
        Become(Registering);
    }

    private void StartReading(ControlConnection connection)
    {
        var self = Self;
        var stopping = _stopping.Token;
        _ = Task.Run(async () =>
        {
            string reason = "the coordinator ended the stream";
            string? code = null;
            try
            {
                await foreach (var message in connection.ReadAllAsync(stopping)) self.Tell(new Arrived(connection, message));
            }
            catch (ControlConnectException e)
            {
                (code, reason) = (e.Code, e.Message);
            }
            catch (RpcException e)
            {
                reason = $"stream failed: {e.Status.StatusCode} {e.Status.Detail}";
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or HttpRequestException or InvalidOperationException)
            {
                reason = "stream failed: " + e.Message;
            }
            self.Tell(new Broken(connection, code, reason));
        }, CancellationToken.None);
    }

    /// <summary>A stream that worked ended: the other coordinators are tried at once.</summary>
    private void OnBroken(Broken broken)
    {
        _dialer?.Lost(broken.Connection.Url, MonotonicNow);
        GoConnecting(TimeSpan.Zero, broken.Code ?? ControlErrorCodes.Unavailable, broken.Reason);
    }

    private void DropConnection()
    {
        if (_connection is { } connection) _ = connection.DisposeAsync().AsTask();
        _connection = null;
        // A new stream registers afresh.
        Timers.Cancel("register-again");
        _awaitingApproval = false;
    }

    private void OnCheck()
    {
        if (_connection is not { } connection) return;
        if (MonotonicNow - _lastHeard > ControlProtocol.SilenceLimit)
        {
            Self.Tell(new Broken(connection, ControlErrorCodes.Unavailable, $"nothing heard from {connection.Url} for {ControlProtocol.SilenceLimit.TotalSeconds:0} s"));
            return;
        }
        if (_status is not (ControlState.Running or ControlState.PendingApproval) || _awaitingApproval) return;
        var step = _session.Check(MonotonicNow);
        if (step.Stale)
            Self.Tell(new Broken(connection, ControlErrorCodes.Unavailable, $"{connection.Url} did not answer for the netmap in {_options.AnswerTimeout.TotalSeconds:0} s"));
        else if (step.SubscribeFrom is { } version)
            Send(new ClientMessage { Subscribe = new Subscribe { LastVersion = version } });
    }

    // ------------------------------------------------------------------ registration

    private void SendRegister()
    {
        var coordinator = _connection!.CoordinatorKey;
        // A reconnect names its device, so the coordinator goes to it straight (a hint it checks); both ids or neither.
        var (resumeTailnet, resumeDevice) = !_useAuthKey && _state is { TailnetId: { } tailnetId, DeviceId: { } deviceId } ? (tailnetId, deviceId) : ("", "");
        Send(new ClientMessage
        {
            Register = new RegisterRequest
            {
                NodeKey = ByteString.CopyFrom(_node.PublicKey.ToArray()),
                NodeKeyProof = ByteString.CopyFrom(NodeKeyProof.Create(_node, coordinator, _machine.PublicKey)),
                DiscoKey = ByteString.CopyFrom(_disco.PublicKey.ToArray()),
                Hostname = _login.Hostname,
                Os = _options.Os,
                AgentVersion = _options.AgentVersion,
                AuthKey = _useAuthKey ? _login.AuthKey ?? "" : "",
                Tailnet = _login.Tailnet ?? "",
                ResumeTailnetId = resumeTailnet,
                ResumeDeviceId = resumeDevice,
            },
        });
    }

    private void OnRegisterResult(RegisterResult result)
    {
        if (result.Status is not (RegisterResult.Types.Status.Authorized or RegisterResult.Types.Status.PendingApproval))
        {
            OnRegisterRefused(result);
            return;
        }
        if (result.Status == RegisterResult.Types.Status.PendingApproval && result.DeviceId.Length == 0)
        {
            // Registered without a key and not admitted yet: someone signs in at the login link (a tailnet with an
            // identity provider), or an admin approves this machine (the coordinator then says no more, not even
            // whether the tailnet exists). Ask again, on this stream, when it says to.
            _dialer?.Connected(_connection!.Url);
            _awaitingApproval = true;
            if (result.LoginUrl.Length > 0)
            {
                if (_loginUrl != result.LoginUrl) _log.Info("To sign in and add this device to the tailnet, visit: {0}", result.LoginUrl);
                _loginUrl = result.LoginUrl;
                SetStatus(ControlState.WaitingForLogin, null, $"to sign in and add this device to the tailnet, visit {result.LoginUrl}");
            }
            else
            {
                SetStatus(ControlState.PendingApproval, null,
                    $"waiting for an admin to approve this device in tailnet '{_login.Tailnet}' (machine key {KeyText.Format(KeyText.MachinePrefix, _machine.PublicKey)[..21]}…)");
            }
            var after = TimeSpan.FromMilliseconds(Math.Max(result.LoginUrl.Length > 0 ? 500 : 1000, result.RetryAfterMs)) * (0.8 + 0.4 * Random.Shared.NextDouble());
            Timers.StartSingleTimer("register-again", RegisterAgain.Instance, after);
            return;
        }
        Timers.Cancel("register-again");
        _awaitingApproval = false;
        _loginUrl = null;
        _useAuthKey = false;
        // An auth key is used once: a later reconnect or restart of this actor must not present it again.
        _login = _login with { AuthKey = null, ForceReauth = false };
        _dialer?.Connected(_connection!.Url);
        if (_state.DeviceId is { } previous && previous != result.DeviceId)
        {
            // Another device now (the old one was deleted while no stream told us, and `up --force-reauth` made
            // a new one): the old device's map is void, and its version says nothing about the new device's,
            // whose first full map would otherwise be refused as older than what is held.
            _log.Info("Registered as device {0} (was {1}): the old device's netmap is dropped", result.DeviceId, previous);
            ForgetNetMap();
        }
        var issued = _state.DeviceId == result.DeviceId ? _state.NodeKeyIssuedAt ?? Now : Now;
        Save(_state with { DeviceId = result.DeviceId, TailnetId = result.TailnetId, NodeKeyIssuedAt = issued });
        var pending = result.Status == RegisterResult.Types.Status.PendingApproval;
        SetStatus(pending ? ControlState.PendingApproval : ControlState.Running, null,
            pending ? "waiting for an admin to approve this device" : $"connected to {_connection!.Url}");
        Become(Registered);
        Send(new ClientMessage { Subscribe = new Subscribe { LastVersion = _session.BeginStream(MonotonicNow) } });
        if (!_endpoints.IsDefaultOrEmpty || _homeRelay != 0) SendEndpoints();
        // The whole advertisement, every session: what the agent was started with replaces what the coordinator had.
        SendHostinfo();
        if (result.KeyExpiry is not null) ScheduleRotation(result.KeyExpiry.ToDateTimeOffset());
        if (_nextNode is not null && !pending) SendRotation(); // a rotation was in flight when the stream broke
    }

    private void OnRegisterRefused(RegisterResult result)
    {
        switch (result.RefusalCode)
        {
            case ControlErrorCodes.NodeKeyMismatch when _nextNode is not null:
                // The coordinator took our rotation but the confirmation was lost: the next key is ours now.
                AdoptNextNodeKey();
                SendRegister();
                return;
            case ControlErrorCodes.Unavailable or ControlErrorCodes.RateLimited:
                // Busy or handing over: this coordinator, or another, is tried again later.
                _dialer?.Failed(_connection!.Url, MonotonicNow, result.RetryAfterMs > 0 ? TimeSpan.FromMilliseconds(result.RetryAfterMs) : null);
                GoConnecting(TimeSpan.Zero, result.RefusalCode, result.RefusalMessage);
                return;
            default:
                NeedsLogin(result.RefusalCode, result.RefusalMessage);
                return;
        }
    }

    private void NeedsLogin(string code, string message)
    {
        if (code is ControlErrorCodes.NotLoggedIn or ControlErrorCodes.LoggedOut) _log.Info("Needs login: {0}", message);
        else _log.Warning("Coordinator refused this device: {0} ({1})", message, code);
        DropConnection();
        Timers.Cancel("dial");
        Timers.Cancel("rotate");
        _rotationPutOff = false; // the login to come starts over; its registration schedules the rotation it needs
        SetStatus(ControlState.NeedsLogin, code, message);
        Become(NeedingLogin);
    }

    // ------------------------------------------------------------------ the stream

    private void OnArrived(Arrived arrived)
    {
        _lastHeard = MonotonicNow;
        var message = arrived.Message;
        switch (message.BodyCase)
        {
            case ServerMessage.BodyOneofCase.RegisterResult:
                OnRegisterResult(message.RegisterResult);
                break;
            case ServerMessage.BodyOneofCase.Netmap:
                Applied(message, _session.OnNetMap(message.Netmap, MonotonicNow));
                _dialer?.Learn(message.Netmap.Coordinators);
                break;
            case ServerMessage.BodyOneofCase.Delta:
                Applied(message, _session.OnDelta(message.Delta, MonotonicNow));
                break;
            case ServerMessage.BodyOneofCase.UpToDate:
                Applied(message, _session.OnUpToDate(message.UpToDate.Version, MonotonicNow));
                break;
            case ServerMessage.BodyOneofCase.Ping:
                Send(new ClientMessage { Pong = new Pong { Nonce = message.Ping.Nonce } });
                break;
            case ServerMessage.BodyOneofCase.NodeKeyRotated:
                OnNodeKeyRotated(message.NodeKeyRotated);
                break;
            case ServerMessage.BodyOneofCase.Error:
                OnError(message.Error);
                break;
            case ServerMessage.BodyOneofCase.LoggedOut:
                if (_loggingOut is not null) FinishLogout(coordinatorTold: true, "logged out: the coordinator expired this device");
                break;
            case ServerMessage.BodyOneofCase.Relay:
                OnRelayUpdate(message.Relay, arrived.Connection.Url);
                break;
            case ServerMessage.BodyOneofCase.GoAway:
                var after = TimeSpan.FromMilliseconds(message.GoAway.AfterMs);
                _log.Info("{0} is going away ({1}); moving to another coordinator", arrived.Connection.Url, message.GoAway.Reason);
                _dialer?.GoingAway(arrived.Connection.Url, after, MonotonicNow);
                GoConnecting(TimeSpan.Zero, null, $"{arrived.Connection.Url} is going away: {message.GoAway.Reason}");
                break;
        }
    }

    /// <summary>A new ticket, and the relay map when it came along (absent means unchanged).</summary>
    private void OnRelayUpdate(RelayUpdate update, Uri coordinator)
    {
        var map = update.Map ?? _relayAccess?.Map;
        if (map is null || update.Ticket.IsEmpty) return;
        _relayAccess = new RelayAccessChanged(map, update.Ticket.ToByteArray(), update.TicketExpiry?.ToDateTimeOffset() ?? DateTimeOffset.MaxValue, coordinator.Host);
        Broadcast(_relayAccess);
    }

    private void Applied(ServerMessage message, MapStep step)
    {
        if (step.SubscribeFrom is { } version)
        {
            if (version == 0) _log.Info("Netmap needs a full map (holding v{0}); asking for one", _session.Store.Version);
            Send(new ClientMessage { Subscribe = new Subscribe { LastVersion = version } });
        }
        if (step.Applied is not { } outcome) return;
        _options.Observer?.Invoke(message, outcome, _session.Store);
        if (outcome is NetMapApplied.Gap or NetMapApplied.Stale) return;
        // Not restarted by every delta: under a steady stream of changes the cache is still written every half second.
        if (_options.NetMapCache is not null && !Timers.IsTimerActive("save-netmap")) Timers.StartSingleTimer("save-netmap", SaveNetMap.Instance, CacheWriteDelay);
        if (_session.Store.Self is { } self)
        {
            if (self.Status == "pending" && _status == ControlState.Running) SetStatus(ControlState.PendingApproval, null, "waiting for an admin to approve this device");
            else if (self.Status == "active" && _status == ControlState.PendingApproval) SetStatus(ControlState.Running, null, $"connected to {_connection?.Url}");
            if (self.KeyExpiry is not null && self.Status == "active") ScheduleRotation(self.KeyExpiry.ToDateTimeOffset());
        }
        if (_watchers.Count > 0) Broadcast(new NetMapChanged(_session.Store.View, outcome) { Touch = _session.Store.LastTouch }); // the view is taken only when someone watches
    }

    private void OnError(Weft.Contracts.Control.Error error)
    {
        switch (error.Code)
        {
            case ControlErrorCodes.DeviceDeleted:
                ForgetNetMap();
                Save(_state with { DeviceId = null, TailnetId = null, NodeKeyIssuedAt = null });
                NeedsLogin(error.Code, error.Message);
                break;
            case ControlErrorCodes.DeviceExpired when _loggingOut is not null:
                NeedsLogin(error.Code, error.Message); // our own logout expired it
                break;
            case ControlErrorCodes.DeviceExpired:
                // Registering again says how to come back: a tailnet with an identity provider answers with a
                // login link (the person signs in again); any other refuses, and the agent needs a login.
                _log.Info("This device's node key expired: {0}; registering again", error.Message);
                Timers.Cancel("rotate");
                SendRegister();
                Become(Registering);
                break;
            case ControlErrorCodes.NotRegistered:
                SendRegister();
                Become(Registering);
                break;
            case ControlErrorCodes.NodeKeyProofInvalid or ControlErrorCodes.NodeKeyInUse when _nextNode is not null:
                // The rotation was refused: forget the next key; the current one stays valid.
                _log.Warning("Node key rotation refused: {0} ({1})", error.Message, error.Code);
                _nextNode.Dispose();
                _nextNode = null;
                Save(_state with { NextNodePrivateKey = null });
                (_code, _detail) = (error.Code, error.Message);
                break;
            default:
                _log.Warning("Coordinator error {0}: {1}", error.Code, error.Message);
                _code = error.Code;
                _detail = error.Message;
                break;
        }
    }

    /// <summary>The whole advertisement (hostname, routes), when this agent reports routes at all (simulated agents do not).</summary>
    private void SendHostinfo()
    {
        if (_login.AdvertisedRoutes.IsDefault) return;
        Send(new ClientMessage { Hostinfo = new HostinfoUpdate { Hostname = _login.Hostname, Os = _options.Os, AgentVersion = _options.AgentVersion, AdvertisedRoutes = { _login.AdvertisedRoutes } } });
    }

    private void OnLogIn(LogIn logIn)
    {
        var before = _login;
        var login = logIn.Login;
        _login = login;
        var moved = !login.SameCoordinators(before);
        if (moved)
        {
            _dialer = NewDialer(login);
            // Another cluster has another key: a device that starts over (new, or re-authorised) pins the new one.
            if (_state.DeviceId is null || login.ForceReauth) Save(_state with { CoordinatorKey = null });
        }
        _useAuthKey = _state.DeviceId is null || (login.ForceReauth && login.AuthKey is not null);
        var again = moved || login.ForceReauth || (_useAuthKey && login.AuthKey is not null) || login.Tailnet != before.Tailnet;
        if (!login.HasCoordinators)
        {
            if (!Idle) NeedsLogin(ControlErrorCodes.NotLoggedIn, NotLoggedInDetail);
        }
        else if (Idle ? logIn.Connect : again)
        {
            _log.Info("Logging in to {0} as {1}", string.Join(", ", login.Coordinators), login.Hostname);
            GoConnecting(TimeSpan.Zero, null, $"logging in to {string.Join(", ", login.Coordinators)}");
        }
        else if (_status is ControlState.Running or ControlState.PendingApproval && (login.Hostname != before.Hostname || !SameRoutes(login, before)))
        {
            SendHostinfo();
        }
        Sender.Tell(Status());
    }

    /// <summary>
    /// The other coordinators the loaded map names (the cluster's public URLs) are dialled too. Only a full
    /// map names them, and a resumed stream brings deltas: without this, an agent restarted while the one
    /// coordinator it was started with is down would dial that one alone, for ever.
    /// </summary>
    private void LearnCoordinatorsOfLoadedMap() => _dialer?.Learn(_session.Store.View.Coordinators);

    private void OnResume(Resume resume)
    {
        // Taken before anything else (AroundReceive): a SetEndpoints that came while the previous incarnation failed follows, and stands.
        (_endpoints, _homeRelay) = (resume.Endpoints, resume.HomeRelay);
        if (Curve25519PrivateKey.TryParseHex(resume.DiscoKeyHex, out var disco))
        {
            _disco.Dispose();
            _disco = disco;
        }
        _login = resume.Login;
        _dialer = NewDialer(_login);
        // What the file could not take yet (a full disk): the state file is older than what the agent went by.
        if (resume.UnsavedState is { } unsaved)
        {
            TakeKeysOf(unsaved);
            Save(unsaved, force: true);
        }
        // The relay map and ticket stay good (the ticket names the node key, which the state file kept): a watcher
        // that registers while no coordinator answers (a data plane that restarted too) still gets its relays.
        _relayAccess = resume.RelayAccess;
        // Before the first write (nothing is handled before Resume): this incarnation's writer starts after the previous one's.
        _previousWrites = resume.PreviousWrites;
        // The previous incarnation's netmap, not the cache's (none if it had none: logged out, deleted).
        _session.Store.Clear();
        if (resume.NetMap is { } latest && _session.LoadCached(latest))
        {
            SaveCache();
            LearnCoordinatorsOfLoadedMap();
        }
        _useAuthKey = _state.DeviceId is null || (_login.ForceReauth && _login.AuthKey is not null);
        if (resume.IdleAs == ControlState.Stopped) Stop();
        else if (resume.IdleAs == ControlState.NeedsLogin) NeedsLogin(resume.Code ?? ControlErrorCodes.NotLoggedIn, resume.Detail);
        // The previous incarnation was up. This one started from the options, which say how the daemon
        // started: not logged in, or stopped (a daemon started after `down`, then brought `up`).
        else if (_status is ControlState.NeedsLogin or ControlState.Stopped && _login.HasCoordinators) GoConnecting(TimeSpan.Zero, null, "starting again");
    }

    private static bool SameRoutes(ControlLogin a, ControlLogin b) =>
        (a.AdvertisedRoutes.IsDefault ? [] : a.AdvertisedRoutes).SequenceEqual(b.AdvertisedRoutes.IsDefault ? [] : b.AdvertisedRoutes);

    private void OnSetEndpoints(SetEndpoints set)
    {
        if (set.Endpoints.SequenceEqual(_endpoints.IsDefault ? [] : _endpoints) && set.HomeRelay == _homeRelay) return;
        _endpoints = set.Endpoints;
        _homeRelay = set.HomeRelay;
        if (_status is ControlState.Running or ControlState.PendingApproval) SendEndpoints();
    }

    private void SendEndpoints()
    {
        var update = new EndpointUpdate { HomeRelay = _homeRelay, DiscoKey = ByteString.CopyFrom(_disco.PublicKey.ToArray()) };
        if (!_endpoints.IsDefault) update.Endpoints.AddRange(_endpoints);
        Send(new ClientMessage { Endpoints = update });
    }

    private void Send(ClientMessage message)
    {
        if (_connection is { } connection && !connection.Send(message))
            Self.Tell(new Broken(connection, ControlErrorCodes.SlowConsumer, "the coordinator does not read fast enough"));
    }

    // ------------------------------------------------------------------ node-key rotation

    private void ScheduleRotation(DateTimeOffset expiry)
    {
        if (_nextNode is not null) return; // one rotation at a time; a reconnect resends it
        if (_rotationPutOff)
        {
            // Its retry is armed (StartRotation): each netmap would replace it with the due time. Unless the retry
            // came while the agent was not registered (a reconnect), where nothing could be done with it: then again.
            if (!Timers.IsTimerActive("rotate")) Timers.StartSingleTimer("rotate", RotationDue.Instance, _options.StateRetryInterval);
            return;
        }
        var due = NodeKeyRotation.DueIn(expiry, _state.NodeKeyIssuedAt ?? Now, Now, _options.RotationLead);
        if (due <= TimeSpan.Zero) StartRotation();
        else Timers.StartSingleTimer("rotate", RotationDue.Instance, due < MaxTimerDelay ? due : MaxTimerDelay);
    }

    private void StartRotation()
    {
        if (_status != ControlState.Running || _connection is null) return;
        // One rotation at a time. A second request for the same rotation would be refused once the first
        // is applied, and the two answers can arrive in either order: a refusal first would drop the next
        // key the device already holds. A rotation in flight is resent when the stream is made again.
        if (_nextNode is not null) return;
        // Keep the next key before asking: if the answer is lost, the agent can still prove it. A key the
        // file could not keep is not asked for (a restart would lose it while the coordinator expects it).
        var next = Curve25519PrivateKey.Generate();
        if (!Save(_state with { NextNodePrivateKey = next.ToHex() }))
        {
            next.Dispose();
            _state = _state with { NextNodePrivateKey = null };
            _log.Warning("Node key rotation put off: the next key could not be written to the state file");
            _rotationPutOff = true; // asked for now (weft-agent rotate) or due: tried again, not rescheduled
            Timers.StartSingleTimer("rotate", RotationDue.Instance, _options.StateRetryInterval);
            return;
        }
        _rotationPutOff = false;
        _nextNode = next;
        SendRotation();
    }

    private void SendRotation()
    {
        var coordinator = _connection!.CoordinatorKey;
        Send(new ClientMessage
        {
            RotateNodeKey = new RotateNodeKey
            {
                OldNodeKey = ByteString.CopyFrom(_node.PublicKey.ToArray()),
                NewNodeKey = ByteString.CopyFrom(_nextNode!.PublicKey.ToArray()),
                OldKeyProof = ByteString.CopyFrom(NodeKeyProof.Create(_node, coordinator, _machine.PublicKey)),
                NewKeyProof = ByteString.CopyFrom(NodeKeyProof.Create(_nextNode, coordinator, _machine.PublicKey)),
            },
        });
    }

    private void OnNodeKeyRotated(NodeKeyRotated rotated)
    {
        if (_nextNode is null || !rotated.NodeKey.Span.SequenceEqual(_nextNode.PublicKey.ToArray())) return;
        AdoptNextNodeKey();
        _log.Info("Node key rotated to {0}", new NodeKey(_node.PublicKey));
        if (rotated.KeyExpiry is not null) ScheduleRotation(rotated.KeyExpiry.ToDateTimeOffset());
    }

    private void AdoptNextNodeKey()
    {
        _node.Dispose();
        _node = _nextNode!;
        _nextNode = null;
        Save(_state with { NodePrivateKey = _node.ToHex(), NextNodePrivateKey = null, NodeKeyIssuedAt = Now });
        Broadcast(new NodeKeyChanged(_node.ToHex(), Rotated: true));
    }

    // ------------------------------------------------------------------ down, up, logout, cache

    private void Stop()
    {
        if (Idle) return;
        DropConnection();
        Timers.Cancel("dial");
        SetStatus(ControlState.Stopped, null, "stopped (weft-agent down); weft-agent up resumes");
        Become(Stopped);
    }

    private void OnLogOut()
    {
        if (_loggingOut is not null)
        {
            Sender.Tell(new LogoutResult(false, "a logout is already in progress"));
            return;
        }
        _loggingOut = Sender;
        if (_connection is not null && _status is ControlState.Running or ControlState.PendingApproval)
        {
            Send(new ClientMessage { Logout = new Logout() });
            Timers.StartSingleTimer("logout", LogoutTimedOut.Instance, LogoutTimeout);
            return;
        }
        FinishLogout(coordinatorTold: false, "no coordinator connected: this agent forgot the device; an admin can delete it");
    }

    /// <summary>Forgets the device: a fresh node key, no device id, no netmap. The machine key stays (Tailscale keeps it too).</summary>
    private void FinishLogout(bool coordinatorTold, string detail)
    {
        if (_loggingOut is not { } asker) return;
        _loggingOut = null;
        Timers.Cancel("logout");
        ForgetNetMap();
        _nextNode?.Dispose();
        _nextNode = null;
        _node.Dispose();
        _node = Curve25519PrivateKey.Generate();
        Save(_state with { NodePrivateKey = _node.ToHex(), NextNodePrivateKey = null, NodeKeyIssuedAt = null, DeviceId = null, TailnetId = null });
        NeedsLogin(ControlErrorCodes.LoggedOut, detail);
        Broadcast(new NodeKeyChanged(_node.ToHex(), Rotated: false));
        asker.Tell(new LogoutResult(coordinatorTold, detail));
    }

    /// <summary>The device is gone (deleted, logged out, replaced by another): its netmap goes, from memory, from disk and from every watcher.</summary>
    private void ForgetNetMap()
    {
        Timers.Cancel("save-netmap");
        _session.Forget();
        CacheWriter?.Delete();
        Broadcast(NetMapForgotten.Instance);
    }

    private void SaveCache()
    {
        if (_session.Store.HasMap) CacheWriter?.Write(_session.Store.ToNetMap());
    }

    /// <summary>The cache's writer, made at the first write (after a restart, once Resume said what it waits for).</summary>
    private NetMapCacheWriter? CacheWriter =>
        _cacheWriter ??= _options.NetMapCache is { } cache ? new NetMapCacheWriter(cache, warning => _log.Warning(warning), _previousWrites) : null;

    // ------------------------------------------------------------------ state and status

    /// <summary>
    /// Makes <paramref name="state"/> what the agent goes by, and writes it to the state file. A write the
    /// file system refuses (a full disk, a file system remounted read-only) is logged and tried again every
    /// <see cref="ControlClientOptions.StateRetryInterval"/>; the agent runs on from memory, and a restart of this actor carries
    /// the unwritten state over (<see cref="Resume"/>). Failing here instead would restart the stream at
    /// every registration (each one writes its device) until the supervisor gave up and the daemon exited,
    /// taking the tunnels with it. A state already written is not written again.
    /// </summary>
    /// <returns>Whether the file holds <paramref name="state"/> now.</returns>
    private bool Save(AgentState state, bool force = false)
    {
        if (!force && !_stateUnsaved && state == _state) return true;
        _state = state;
        try
        {
            _options.StateStore.Save(state);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (!_stateUnsaved) _log.Error(e, "The agent's state could not be written; running on from memory and trying again every {0}", _options.StateRetryInterval);
            _stateUnsaved = true;
            Timers.StartSingleTimer("save-state", SaveStateAgain.Instance, _options.StateRetryInterval);
            return false;
        }
        if (_stateUnsaved) _log.Info("The agent's state is written again");
        _stateUnsaved = false;
        Timers.Cancel("save-state");
        return true;
    }

    /// <summary>The state, and the keys it holds, as this actor's (at start from the file; after a restart from what the file could not take).</summary>
    private void TakeKeysOf(AgentState state)
    {
        _state = state;
        _machine?.Dispose();
        _node?.Dispose();
        _nextNode?.Dispose();
        _machine = AgentStateFile.Key(state.MachinePrivateKey);
        _node = AgentStateFile.Key(state.NodePrivateKey);
        _nextNode = state.NextNodePrivateKey is { } next ? AgentStateFile.Key(next) : null;
    }

    private void SetStatus(ControlState status, string? code, string detail)
    {
        // Watchers hear of a new state, and of a new reason within one (connecting: unreachable, then refused).
        var changed = status != _status || code != _code || (status == ControlState.WaitingForLogin && detail != _detail); // a new login link
        (_status, _code, _detail) = (status, code, detail);
        if (changed) Broadcast(new ControlStateChanged(status, code, detail));
    }

    private void Broadcast(object message)
    {
        foreach (var watcher in _watchers) watcher.Tell(message);
    }

    private AgentStatus Status()
    {
        var view = _session.Store.View;
        return new AgentStatus(
            _status, _code, _detail, _connection?.Url.ToString(), new MachineKey(_machine.PublicKey).ToString(), new NodeKey(_node.PublicKey).ToString(),
            _state.DeviceId, _state.TailnetId, view.Version, view.Self is { } self ? PeerStatus.From(self) : null,
            view.Peers.Values.OrderBy(p => p.Name, StringComparer.Ordinal).Select(PeerStatus.From).ToList())
        {
            LoginUrl = _status == ControlState.WaitingForLogin ? _loginUrl : null,
        };
    }

    // ------------------------------------------------------------------ internal messages

    private sealed record Dial(Uri Url);

    /// <summary>What a restarted incarnation is told by the one before: the login it had, the idle state it was in, its endpoints and its disco key.</summary>
    private sealed record Resume(ControlLogin Login, ControlState? IdleAs, string? Code, string Detail, ImmutableArray<string> Endpoints, int HomeRelay, NetMap? NetMap,
        Task? PreviousWrites, string DiscoKeyHex, RelayAccessChanged? RelayAccess, AgentState? UnsavedState);

    /// <summary>Time to write the state that the file could not take.</summary>
    private sealed class SaveStateAgain
    {
        public static readonly SaveStateAgain Instance = new();
    }

    private sealed record Connected(ControlConnection Connection, int Generation);

    private sealed record DialFailed(Uri Url, Exception Error, int Generation);

    private sealed record Arrived(ControlConnection Connection, ServerMessage Message);

    private sealed record Broken(ControlConnection Connection, string? Code, string Reason);

    private sealed class Check
    {
        public static readonly Check Instance = new();
    }

    private sealed class RegisterAgain
    {
        public static readonly RegisterAgain Instance = new();
    }

    private sealed class RotationDue
    {
        public static readonly RotationDue Instance = new();
    }

    private sealed class SaveNetMap
    {
        public static readonly SaveNetMap Instance = new();
    }

    private sealed class LogoutTimedOut
    {
        public static readonly LogoutTimedOut Instance = new();
    }
}
