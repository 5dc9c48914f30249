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
    public TimeSpan MinBackoff { get; init; } = TimeSpan.FromMilliseconds(500);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>How long before expiry the node key rotates; default a quarter of its lifetime, at most a day.</summary>
    public TimeSpan? RotationLead { get; init; }
    /// <summary>Lets many simulated agents share one HTTP/2 connection per coordinator (each still has its own stream).</summary>
    public Func<Uri, GrpcChannel>? SharedChannels { get; init; }
    /// <summary>Called on the actor's thread after every netmap or delta is applied (benchmarks measure propagation here).</summary>
    public Action<ServerMessage, NetMapApplied, NetMapStore>? Observer { get; init; }
    public TimeProvider Clock { get; init; } = TimeProvider.System;
    /// <summary>Keeps the last netmap on disk (the agent daemon); null for simulated agents.</summary>
    public INetMapCache? NetMapCache { get; init; }
}

/// <summary>
/// The agent's link to the coordination cluster. It dials the coordinator URLs with jittered
/// exponential backoff, runs the Noise handshake, registers, and applies the full netmap and then
/// the deltas to its <see cref="NetMapStore"/> — asking for a full map again whenever a delta does
/// not continue from the version it holds. It reports endpoint changes and rotates the node key
/// before it expires. Keys live in the agent state (file mode 0600).
/// </summary>
public sealed class ControlClient : ReceiveActor, IWithTimers
{
    private static readonly TimeSpan SilenceCheckInterval = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan SilenceLimit = TimeSpan.FromSeconds(90);
    private static readonly TimeSpan MaxTimerDelay = TimeSpan.FromHours(12);
    /// <summary>Netmap writes to the cache are coalesced: a burst of deltas costs one write.</summary>
    private static readonly TimeSpan CacheWriteDelay = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan LogoutTimeout = TimeSpan.FromSeconds(10);

    private readonly ControlClientOptions _options;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly NetMapStore _netmap = new();
    private readonly HashSet<IActorRef> _watchers = [];
    private readonly CancellationTokenSource _stopping = new();
    private readonly Curve25519PrivateKey _disco = Curve25519PrivateKey.Generate();
    private AgentState _state = null!;
    private Curve25519PrivateKey _machine = null!;
    private Curve25519PrivateKey _node = null!;
    private Curve25519PrivateKey? _nextNode;
    private ControlConnection? _connection;
    private int _urlIndex;
    private int _failures;
    private bool _useAuthKey;
    private bool _awaitingFullMap;
    private DateTimeOffset _lastHeard;
    private ImmutableArray<string> _endpoints;
    private int _homeRelay;
    private ControlState _status = ControlState.Connecting;
    private string? _code;
    private string _detail = "starting";
    // The map came from the disk cache and nothing live has replaced it yet: any full map wins.
    private bool _mapIsCached;
    private IActorRef? _loggingOut;

    public ControlClient(ControlClientOptions options)
    {
        if (options.Coordinators.Count == 0) throw new ArgumentException("at least one coordinator URL is needed", nameof(options));
        _options = options;
        _endpoints = options.Endpoints;

        Receive<Dial>(_ => OnDial());
        Receive<Connected>(OnConnected);
        Receive<DialFailed>(OnDialFailed);
        Receive<Arrived>(OnArrived);
        Receive<Broken>(OnBroken);
        Receive<SilenceCheck>(_ => OnSilenceCheck());
        Receive<RotationDue>(_ =>
        {
            if (_netmap.Self?.KeyExpiry is { } expiry) ScheduleRotation(expiry.ToDateTimeOffset());
        });
        Receive<RotateNodeKeyNow>(_ => StartRotation());
        Receive<SetEndpoints>(OnSetEndpoints);
        Receive<Reconnect>(reconnect =>
        {
            if (Idle) return;
            DropConnection();
            SetStatus(ControlState.Connecting, null, "reconnecting");
            Timers.StartSingleTimer("dial", Dial.Instance, reconnect.After);
        });
        Receive<GetAgentStatus>(_ => Sender.Tell(Status()));
        Receive<WatchControl>(watch =>
        {
            _watchers.Add(watch.Watcher);
            Context.Watch(watch.Watcher);
            watch.Watcher.Tell(new NodeKeyChanged(_node.ToHex(), Rotated: false));
            watch.Watcher.Tell(new ControlStateChanged(_status, _code, _detail));
            if (_netmap.HasMap) watch.Watcher.Tell(new NetMapChanged(_netmap.View, NetMapApplied.Replaced));
        });
        Receive<SaveNetMap>(_ => SaveCache());
        Receive<SetWantRunning>(OnSetWantRunning);
        Receive<LogOut>(_ => OnLogOut());
        Receive<LogoutTimedOut>(_ => FinishLogout(coordinatorTold: false, "the coordinator did not confirm in time; this agent forgot the device anyway"));
        Receive<Terminated>(terminated => _watchers.Remove(terminated.ActorRef));
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props PropsFor(ControlClientOptions options) => Props.Create(() => new ControlClient(options));

    protected override void PreStart()
    {
        _state = _options.StateStore.Load();
        _machine = AgentStateFile.Key(_state.MachinePrivateKey);
        _node = AgentStateFile.Key(_state.NodePrivateKey);
        _nextNode = _state.NextNodePrivateKey is { } next ? AgentStateFile.Key(next) : null;
        _useAuthKey = _state.DeviceId is null || (_options.ForceReauth && _options.AuthKey is not null);
        if (_state.DeviceId is not null && _options.NetMapCache?.Load() is { } cached && _netmap.Apply(cached) == NetMapApplied.Replaced)
        {
            _mapIsCached = true;
            _log.Info("Loaded the cached netmap v{0} ({1} peers)", _netmap.Version, _netmap.PeerCount);
        }
        Timers.StartPeriodicTimer("silence", SilenceCheck.Instance, SilenceCheckInterval);
        Self.Tell(Dial.Instance);
    }

    protected override void PostStop()
    {
        _stopping.Cancel();
        if (_connection is { } connection) _ = connection.DisposeAsync().AsTask();
        _machine?.Dispose();
        _node?.Dispose();
        _nextNode?.Dispose();
        _disco.Dispose();
    }

    private Curve25519PublicKey? PinnedCoordinatorKey =>
        _state.CoordinatorKey is { } hex && Curve25519PublicKey.TryParseHex(hex, out var key) ? key : null;

    // ------------------------------------------------------------------ connecting

    private void OnDial()
    {
        if (_connection is not null || Idle) return;
        var url = _options.Coordinators[_urlIndex % _options.Coordinators.Count];
        var self = Self;
        var shared = _options.SharedChannels?.Invoke(url);
        ControlConnection.OpenAsync(url, _machine, PinnedCoordinatorKey, _options.Clock, shared, _stopping.Token)
            .ContinueWith(task => task.IsCompletedSuccessfully ? (object)new Connected(task.Result) : new DialFailed(url, task.Exception?.GetBaseException() ?? new OperationCanceledException()),
                TaskScheduler.Default)
            .PipeTo(self);
    }

    /// <summary>Not dialling on purpose: refused for good, logged out, or turned off.</summary>
    private bool Idle => _status is ControlState.NeedsLogin or ControlState.Stopped;

    private void OnDialFailed(DialFailed failed)
    {
        if (Idle) return;
        if (failed.Error is ControlConnectException { Permanent: true } permanent)
        {
            NeedsLogin(permanent.Code, permanent.Message);
            return;
        }
        var code = failed.Error is ControlConnectException known ? known.Code : ControlErrorCodes.Unavailable;
        SetStatus(ControlState.Connecting, code, $"cannot reach {failed.Url}: {failed.Error.Message}");
        _urlIndex++; // the next coordinator may be up
        RetryLater();
    }

    private void OnConnected(Connected connected)
    {
        var connection = connected.Connection;
        if (_stopping.IsCancellationRequested || Idle)
        {
            _ = connection.DisposeAsync().AsTask();
            return;
        }
        _connection = connection;
        _lastHeard = _options.Clock.GetUtcNow();
        if (PinnedCoordinatorKey is null) Save(_state with { CoordinatorKey = connection.CoordinatorKey.ToHex() });
        StartReading(connection);
        SetStatus(ControlState.Registering, null, $"registering with {connection.Url}");
        SendRegister();
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

    private void OnBroken(Broken broken)
    {
        if (!ReferenceEquals(broken.Connection, _connection)) return;
        DropConnection();
        if (Idle) return;
        SetStatus(ControlState.Connecting, broken.Code ?? ControlErrorCodes.Unavailable, broken.Reason);
        RetryLater();
    }

    private void DropConnection()
    {
        if (_connection is { } connection) _ = connection.DisposeAsync().AsTask();
        _connection = null;
    }

    private void RetryLater()
    {
        // Jittered exponential backoff ("equal jitter"): half the step fixed, half random, so a whole
        // fleet reconnecting after a coordinator restart spreads out.
        var step = Math.Min(_options.MaxBackoff.TotalMilliseconds, _options.MinBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(_failures, 16)));
        var delay = TimeSpan.FromMilliseconds(step / 2 + Random.Shared.NextDouble() * step / 2);
        _failures++;
        Timers.StartSingleTimer("dial", Dial.Instance, delay);
    }

    private void OnSilenceCheck()
    {
        if (_connection is null || _options.Clock.GetUtcNow() - _lastHeard <= SilenceLimit) return;
        Self.Tell(new Broken(_connection, ControlErrorCodes.Unavailable, $"nothing heard from {_connection.Url} for {SilenceLimit.TotalSeconds:0} s"));
    }

    // ------------------------------------------------------------------ registration

    private void SendRegister()
    {
        var coordinator = _connection!.CoordinatorKey;
        Send(new ClientMessage
        {
            Register = new RegisterRequest
            {
                NodeKey = ByteString.CopyFrom(_node.PublicKey.ToArray()),
                NodeKeyProof = ByteString.CopyFrom(NodeKeyProof.Create(_node, coordinator, _machine.PublicKey)),
                DiscoKey = ByteString.CopyFrom(_disco.PublicKey.ToArray()),
                Hostname = _options.Hostname,
                Os = _options.Os,
                AgentVersion = _options.AgentVersion,
                AuthKey = _useAuthKey ? _options.AuthKey ?? "" : "",
                Tailnet = _options.Tailnet ?? "",
            },
        });
    }

    private void OnRegisterResult(RegisterResult result)
    {
        switch (result.Status)
        {
            case RegisterResult.Types.Status.Authorized:
            case RegisterResult.Types.Status.PendingApproval:
                _useAuthKey = false;
                _failures = 0;
                var issued = _state.DeviceId == result.DeviceId ? _state.NodeKeyIssuedAt ?? _options.Clock.GetUtcNow() : _options.Clock.GetUtcNow();
                Save(_state with { DeviceId = result.DeviceId, TailnetId = result.TailnetId, NodeKeyIssuedAt = issued });
                var pending = result.Status == RegisterResult.Types.Status.PendingApproval;
                SetStatus(pending ? ControlState.PendingApproval : ControlState.Running, null,
                    pending ? "waiting for an admin to approve this device" : $"connected to {_connection!.Url}");
                _awaitingFullMap = !_netmap.HasMap;
                Send(new ClientMessage { Subscribe = new Subscribe { LastVersion = _netmap.HasMap ? _netmap.Version : 0 } });
                if (!_endpoints.IsDefaultOrEmpty || _homeRelay != 0) SendEndpoints();
                if (result.KeyExpiry is not null) ScheduleRotation(result.KeyExpiry.ToDateTimeOffset());
                if (_nextNode is not null && !pending) SendRotation(); // a rotation was in flight when the stream broke
                break;
            default:
                OnRegisterRefused(result.RefusalCode, result.RefusalMessage);
                break;
        }
    }

    private void OnRegisterRefused(string code, string message)
    {
        switch (code)
        {
            case ControlErrorCodes.NodeKeyMismatch when _nextNode is not null:
                // The coordinator took our rotation but the confirmation was lost: the next key is ours now.
                AdoptNextNodeKey();
                SendRegister();
                return;
            case ControlErrorCodes.Unavailable:
                Self.Tell(new Broken(_connection!, code, message));
                return;
            default:
                NeedsLogin(code, message);
                return;
        }
    }

    private void NeedsLogin(string code, string message)
    {
        _log.Warning("Coordinator refused this device: {0} ({1})", message, code);
        DropConnection();
        Timers.Cancel("dial");
        Timers.Cancel("rotate");
        SetStatus(ControlState.NeedsLogin, code, message);
    }

    // ------------------------------------------------------------------ the stream

    private void OnArrived(Arrived arrived)
    {
        if (!ReferenceEquals(arrived.Connection, _connection)) return;
        _lastHeard = _options.Clock.GetUtcNow();
        var message = arrived.Message;
        switch (message.BodyCase)
        {
            case ServerMessage.BodyOneofCase.RegisterResult:
                OnRegisterResult(message.RegisterResult);
                break;
            case ServerMessage.BodyOneofCase.Netmap:
                _awaitingFullMap = false;
                if (_mapIsCached) _netmap.Clear(); // the live map replaces the cached one whatever its version
                _mapIsCached = false;
                Applied(message, _netmap.Apply(message.Netmap));
                break;
            case ServerMessage.BodyOneofCase.Delta:
                if (_awaitingFullMap) break; // a full map is on its way; deltas before it are of no use
                var outcome = _netmap.Apply(message.Delta);
                if (outcome == NetMapApplied.Patched) _mapIsCached = false;
                if (outcome == NetMapApplied.Gap)
                {
                    _log.Info("Netmap delta {0} does not follow version {1}; asking for a full map", message.Delta.BaseVersion, _netmap.Version);
                    _awaitingFullMap = true;
                    Send(new ClientMessage { Subscribe = new Subscribe { LastVersion = 0 } });
                }
                Applied(message, outcome);
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
        }
    }

    private void Applied(ServerMessage message, NetMapApplied outcome)
    {
        _options.Observer?.Invoke(message, outcome, _netmap);
        if (outcome is NetMapApplied.Gap or NetMapApplied.Stale) return;
        // Not restarted by every delta: under a steady stream of changes the cache is still written every half second.
        if (_options.NetMapCache is not null && !Timers.IsTimerActive("save-netmap")) Timers.StartSingleTimer("save-netmap", SaveNetMap.Instance, CacheWriteDelay);
        if (_netmap.Self is { } self)
        {
            if (self.Status == "pending" && _status == ControlState.Running) SetStatus(ControlState.PendingApproval, null, "waiting for an admin to approve this device");
            else if (self.Status == "active" && _status == ControlState.PendingApproval) SetStatus(ControlState.Running, null, $"connected to {_connection?.Url}");
            if (self.KeyExpiry is not null && self.Status == "active") ScheduleRotation(self.KeyExpiry.ToDateTimeOffset());
        }
        if (_watchers.Count > 0) Broadcast(new NetMapChanged(_netmap.View, outcome)); // the view is built only when someone watches
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
            case ControlErrorCodes.DeviceExpired:
                NeedsLogin(error.Code, error.Message);
                break;
            case ControlErrorCodes.NotRegistered:
                SendRegister();
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
        var now = _options.Clock.GetUtcNow();
        var issued = _state.NodeKeyIssuedAt ?? now;
        var lead = _options.RotationLead ?? TimeSpan.FromTicks(Math.Min(TimeSpan.FromDays(1).Ticks, Math.Max(0, (expiry - issued).Ticks / 4)));
        var due = expiry - lead - now;
        if (due <= TimeSpan.Zero) StartRotation();
        else Timers.StartSingleTimer("rotate", RotationDue.Instance, due < MaxTimerDelay ? due : MaxTimerDelay);
    }

    private void StartRotation()
    {
        if (_status != ControlState.Running || _connection is null) return;
        if (_nextNode is null)
        {
            // Keep the next key before asking: if the answer is lost, the agent can still prove it.
            _nextNode = Curve25519PrivateKey.Generate();
            Save(_state with { NextNodePrivateKey = _nextNode.ToHex() });
        }
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
        Save(_state with { NodePrivateKey = _node.ToHex(), NextNodePrivateKey = null, NodeKeyIssuedAt = _options.Clock.GetUtcNow() });
        Broadcast(new NodeKeyChanged(_node.ToHex(), Rotated: true));
    }

    // ------------------------------------------------------------------ down, up, logout, cache

    private void OnSetWantRunning(SetWantRunning want)
    {
        if (!want.Running)
        {
            if (Idle) return;
            DropConnection();
            Timers.Cancel("dial");
            SetStatus(ControlState.Stopped, null, "stopped (weft-agent down); weft-agent up resumes");
            return;
        }
        if (_status != ControlState.Stopped) return;
        _failures = 0;
        SetStatus(ControlState.Connecting, null, "starting again");
        Self.Tell(Dial.Instance);
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

    /// <summary>The device is gone (deleted, logged out): its netmap goes, from memory and from disk.</summary>
    private void ForgetNetMap()
    {
        Timers.Cancel("save-netmap");
        _netmap.Clear();
        _options.NetMapCache?.Delete();
    }

    private void SaveCache()
    {
        if (_options.NetMapCache is not { } cache || !_netmap.HasMap) return;
        try
        {
            cache.Save(_netmap.ToNetMap());
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Warning("Cannot write the netmap cache: {0}", e.Message);
        }
    }

    // ------------------------------------------------------------------ state and status

    private void Save(AgentState state)
    {
        _state = state;
        _options.StateStore.Save(state);
    }

    private void SetStatus(ControlState status, string? code, string detail)
    {
        var changed = status != _status;
        (_status, _code, _detail) = (status, code, detail);
        if (changed) Broadcast(new ControlStateChanged(status, code, detail));
    }

    private void Broadcast(object message)
    {
        foreach (var watcher in _watchers) watcher.Tell(message);
    }

    private AgentStatus Status()
    {
        var view = _netmap.View;
        return new AgentStatus(
            _status, _code, _detail, _connection?.Url.ToString(), new MachineKey(_machine.PublicKey).ToString(), new NodeKey(_node.PublicKey).ToString(),
            _state.DeviceId, _state.TailnetId, view.Version, view.Self is { } self ? PeerStatus.From(self) : null,
            view.Peers.Values.OrderBy(p => p.Name, StringComparer.Ordinal).Select(PeerStatus.From).ToList());
    }

    // ------------------------------------------------------------------ internal messages

    private sealed record Connected(ControlConnection Connection);

    private sealed record DialFailed(Uri Url, Exception Error);

    private sealed record Arrived(ControlConnection Connection, ServerMessage Message);

    private sealed record Broken(ControlConnection Connection, string? Code, string Reason);

    private sealed class Dial
    {
        public static readonly Dial Instance = new();
    }

    private sealed class SilenceCheck
    {
        public static readonly SilenceCheck Instance = new();
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
