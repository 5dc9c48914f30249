using Akka.Actor;
using Akka.Event;
using Weft.Contracts.Control;
using Weft.Contracts.Disco;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.WireGuard;
using Weft.Relay;

namespace Weft.NodeAgent.Paths;

/// <summary>The key and ticket to log in with; a new pair (renewal, rotation) replaces the connection, making the new one before breaking the old.</summary>
public sealed record RelayCredentials(string NodePrivateKeyHex, byte[] Ticket)
{
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("NodePrivateKeyHex = (secret), Ticket = (") .Append(Ticket.Length).Append(" bytes)");
        return true;
    }
}

/// <summary>The machine moved (roaming): the connection's TCP path is probably dead, so a new one is made before the old one is dropped.</summary>
public sealed class ReconnectRelay
{
    public static readonly ReconnectRelay Instance = new();
}

/// <summary>This client serves the home region (kept up always) or not (closed when idle).</summary>
public sealed record SetHomeRegion(bool IsHome);

/// <summary>
/// The connection to one relay region, as the PathManager's child: it dials the region's first node
/// (then the others, in turn, when one fails), logs in with the node key and the cluster's ticket,
/// and reconnects with backoff for as long as it is wanted. The home region's client lives as long
/// as the home stays; another region's is opened on demand and stopped after a minute unused.
/// <para>
/// Packets never pass through this actor: the engine sends through the <see cref="RelayHub"/>, and
/// the connection's reader task hands what arrives straight to the engine (WireGuard) or to the
/// PathManager (disco). A restart dials again with the credentials it is given at start; nothing
/// else is remembered.
/// </para>
/// </summary>
public sealed class RelayClient : UntypedActor, IWithTimers
{
    private static readonly TimeSpan IdleLimit = TimeSpan.FromSeconds(60);
    /// <summary>How long a replaced connection stays open: packets peers still address to it (the old key, after a rotation) arrive meanwhile.</summary>
    public static readonly TimeSpan OldConnectionGrace = TimeSpan.FromSeconds(10);
    /// <summary>A ping to the relay this often; a connection silent for <see cref="SilenceLimit"/> (a dead TCP path: a rebooted NAT, a moved machine) is replaced.</summary>
    private static readonly TimeSpan LivenessInterval = TimeSpan.FromSeconds(15);
    /// <summary>The pause before dialling again after the connection was lost (spread over its second half, see <see cref="RetryPause.Spread"/>).</summary>
    private static readonly TimeSpan LostConnectionRedial = TimeSpan.FromMilliseconds(800);
    private static readonly TimeSpan SilenceLimit = TimeSpan.FromSeconds(40);

    private readonly RelayRegion _region;
    private readonly string _controlHost;
    private readonly RelayHub _hub;
    private readonly WireGuardDevice _device;
    private readonly IActorRef _paths;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly CancellationTokenSource _stopping = new();
    private RelayCredentials _credentials;
    private bool _home;
    private RelayClientConnection? _connection;
    /// <summary>Connections replaced by a newer one, each closed <see cref="OldConnectionGrace"/> after (on its own timer), or when this client stops.</summary>
    private readonly HashSet<RelayClientConnection> _retiring = [];
    /// <summary>
    /// This incarnation. A dial the previous one started (a restart cancels it, or it completes late) reports to
    /// the same actor; its result belongs to no dial of this one, whatever its generation.
    /// </summary>
    private readonly object _incarnation = new();
    private int _nodeIndex;
    private int _failures;
    private bool _dialing;
    private int _generation;

    public RelayClient(RelayRegion region, string controlHost, RelayHub hub, WireGuardDevice device, IActorRef paths, RelayCredentials credentials, bool home)
    {
        _region = region;
        _controlHost = controlHost;
        _hub = hub;
        _device = device;
        _paths = paths;
        _credentials = credentials;
        _home = home;
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props PropsFor(RelayRegion region, string controlHost, RelayHub hub, WireGuardDevice device, IActorRef paths, RelayCredentials credentials, bool home) =>
        Props.Create(() => new RelayClient(region, controlHost, hub, device, paths, credentials, home));

    private sealed record Connected(RelayClientConnection Connection, object Incarnation, int Generation, RelayNodeAddress Node);

    private sealed record DialFailed(string Error, object Incarnation, int Generation, RelayNodeAddress Node);

    private sealed record ConnectionLost(RelayClientConnection Connection);

    private sealed record CloseOld(RelayClientConnection Connection);

    private sealed class Dial
    {
        public static readonly Dial Instance = new();
    }

    private sealed class IdleCheck
    {
        public static readonly IdleCheck Instance = new();
    }

    private sealed class Liveness
    {
        public static readonly Liveness Instance = new();
    }

    protected override void PreStart()
    {
        Self.Tell(Dial.Instance);
        // After a restart the credentials given at creation may be old (a renewal, a rotation): ask for the current ones.
        Context.Parent.Tell(new RelayClientStarted(_region.Id));
        Timers.StartPeriodicTimer("liveness", Liveness.Instance, LivenessInterval);
        if (!_home) Timers.StartPeriodicTimer("idle", IdleCheck.Instance, TimeSpan.FromSeconds(15));
    }

    protected override void PostStop()
    {
        _stopping.Cancel();
        if (_connection is { } connection)
        {
            _hub.Detach(_region.Id, connection);
            _ = connection.DisposeAsync().AsTask();
        }
        // Their timers die with this incarnation, and their readers end with _stopping without closing them.
        foreach (var retiring in _retiring) _ = retiring.DisposeAsync().AsTask();
        _retiring.Clear();
    }

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case Dial:
                StartDial();
                break;
            case Connected connected when connected.Incarnation == _incarnation && connected.Generation == _generation:
                OnConnected(connected);
                break;
            case Connected stale:
                _ = stale.Connection.DisposeAsync().AsTask();
                break;
            case DialFailed failed when failed.Incarnation == _incarnation && failed.Generation == _generation:
                _dialing = false;
                _failures++;
                _nodeIndex = (_nodeIndex + 1) % Math.Max(1, _region.Nodes.Count);
                var backoff = RetryPause.Spread(RetryPause.Doubling(TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(10), _failures));
                _log.Warning("Relay region {0} ({1}): cannot connect to {2}: {3}; trying again in {4:0.0} s", _region.Id, _region.Code, failed.Node, failed.Error, backoff.TotalSeconds);
                Timers.StartSingleTimer("dial", Dial.Instance, backoff);
                break;
            case DialFailed:
                break;
            case ConnectionLost lost when lost.Connection == _connection:
                _hub.Detach(_region.Id, lost.Connection);
                _connection = null;
                _log.Warning("Relay region {0} ({1}): connection lost; reconnecting", _region.Id, _region.Code);
                _nodeIndex = (_nodeIndex + 1) % Math.Max(1, _region.Nodes.Count);
                // Spread: a relay that restarted lost every client at the same moment.
                Timers.StartSingleTimer("dial", Dial.Instance, RetryPause.Spread(LostConnectionRedial));
                break;
            case ConnectionLost lost:
                // A replaced one that closed before its grace ran out.
                if (_retiring.Remove(lost.Connection))
                {
                    Timers.Cancel(lost.Connection);
                    _ = lost.Connection.DisposeAsync().AsTask();
                }
                break;
            case CloseOld old:
                _retiring.Remove(old.Connection);
                _ = old.Connection.DisposeAsync().AsTask();
                break;
            case Liveness:
                if (_connection is { } live)
                {
                    if (live.SilentMs > SilenceLimit.TotalMilliseconds)
                    {
                        _log.Warning("Relay region {0}: nothing heard for {1:0} s; reconnecting", _region.Id, live.SilentMs / 1000.0);
                        Replace();
                    }
                    else live.TrySendFrame(RelayFrame.Build(RelayFrameType.Ping, BitConverter.GetBytes(Environment.TickCount64)));
                }
                break;
            case ReconnectRelay:
                Replace();
                break;
            case RelayCredentials credentials:
                if (credentials.NodePrivateKeyHex == _credentials.NodePrivateKeyHex && credentials.Ticket.AsSpan().SequenceEqual(_credentials.Ticket)) break;
                _credentials = credentials;
                Replace();
                break;
            case SetHomeRegion home:
                _home = home.IsHome;
                if (_home) Timers.Cancel("idle");
                else Timers.StartPeriodicTimer("idle", IdleCheck.Instance, TimeSpan.FromSeconds(15));
                _connection?.TrySendFrame(RelayFrame.Build(RelayFrameType.NotePreferred, [_home ? (byte)1 : (byte)0]));
                break;
            case IdleCheck:
                if (!_home && _hub.IdleMs(_region.Id) > IdleLimit.TotalMilliseconds)
                {
                    _log.Debug("Relay region {0}: idle for a minute; closing", _region.Id);
                    Context.Stop(Self);
                }
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    /// <summary>Make before break: the current connection keeps carrying packets until the new one is up.</summary>
    private void Replace()
    {
        _generation++;
        _dialing = false;
        StartDial();
    }

    private void StartDial()
    {
        if (_dialing || _region.Nodes.Count == 0) return;
        _dialing = true;
        var node = _region.Nodes[_nodeIndex % _region.Nodes.Count];
        var address = new RelayNodeAddress(node.Host.Length > 0 ? node.Host : _controlHost, node.Port, node.Tls, node.InsecureForTests);
        var key = AgentKey(_credentials.NodePrivateKeyHex);
        var info = new ClientInfo { Ticket = _credentials.Ticket };
        var (incarnation, generation, self, stopping) = (_incarnation, _generation, Self, _stopping.Token);
        RelayClientConnection.ConnectAsync(address, key, info, stopping, PolicyRouting.MarkBypass)
            .ContinueWith(task =>
            {
                key.Dispose();
                if (task.IsCompletedSuccessfully && stopping.IsCancellationRequested)
                {
                    // Connected as this client stopped: no one would close it.
                    _ = task.Result.DisposeAsync().AsTask();
                    return new DialFailed("stopped", incarnation, generation, address);
                }
                return task.IsCompletedSuccessfully
                    ? (object)new Connected(task.Result, incarnation, generation, address)
                    : new DialFailed(task.Exception?.GetBaseException().Message ?? "cancelled", incarnation, generation, address);
            }, TaskScheduler.Default)
            .PipeTo(self);
    }

    private static Curve25519PrivateKey AgentKey(string hex) =>
        Curve25519PrivateKey.TryParseHex(hex, out var key) ? key : throw new InvalidOperationException("the node key is not 64 hex characters");

    private void OnConnected(Connected connected)
    {
        _dialing = false;
        _failures = 0;
        var previous = _connection;
        _connection = connected.Connection;
        _hub.Attach(_region.Id, connected.Connection);
        connected.Connection.TrySendFrame(RelayFrame.Build(RelayFrameType.NotePreferred, [_home ? (byte)1 : (byte)0]));
        _log.Info("Relay region {0} ({1}): connected to {2}{3}", _region.Id, _region.Code, connected.Node, _home ? " (home)" : "");
        if (previous is not null)
        {
            // A timer per connection: a second replacement within the grace must not cancel the first one's closing.
            _retiring.Add(previous);
            Timers.StartSingleTimer(previous, new CloseOld(previous), OldConnectionGrace);
        }
        _ = ReadLoopAsync(connected.Connection);
    }

    /// <summary>Runs on a pool thread per connection: WireGuard goes straight to the engine, disco to the PathManager.</summary>
    private async Task ReadLoopAsync(RelayClientConnection connection)
    {
        var region = _region.Id;
        var self = Self;
        try
        {
            while (await connection.ReadAsync(_stopping.Token) is { } frame)
            {
                if (frame.Type == RelayFrameType.RecvPacket && frame.Payload.Length > RelayFrame.KeySize)
                {
                    _hub.Heard(region);
                    var source = Endpoint.ForRelay(region, new Curve25519PublicKey(frame.Payload.AsSpan(0, RelayFrame.KeySize)));
                    var packet = frame.Payload[RelayFrame.KeySize..];
                    if (DiscoPacket.HasMagic(packet)) _paths.Tell(new DiscoArrived(packet, source));
                    else _device.ReceiveRelayed(packet, source);
                }
                else if (frame.Type == RelayFrameType.Health && frame.Payload.Length > 0)
                {
                    _log.Warning("Relay region {0} says: {1}", region, System.Text.Encoding.UTF8.GetString(frame.Payload));
                }
            }
        }
        catch (OperationCanceledException) { }
        catch (Exception e)
        {
            _log.Warning("Relay region {0}: reading failed: {1}", region, e.Message);
        }
        self.Tell(new ConnectionLost(connection));
    }
}
