using System.Collections.Immutable;
using System.Net;
using System.Threading.Channels;
using Akka.Actor;
using Akka.Event;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Weft.Cluster.Devices;
using Weft.Cluster.Machines;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;

namespace Weft.Cluster.Sessions;

/// <summary>A client message that arrived on the stream, already opened and parsed.</summary>
public sealed record ClientFrameArrived(ClientMessage Message);

/// <summary>The stream is gone (client closed, network failed): the session stops.</summary>
public sealed record StreamClosed(string Reason);

/// <summary>What a session needs from the node it runs on.</summary>
public sealed record SessionServices(
    IActorRef Directory, IActorRef Tailnets, IActorRef Devices, IActorRef Machines,
    Curve25519PrivateKey CoordinatorKey, TimeProvider Clock, string[] CoordinatorUrls);

/// <summary>
/// One agent's stream, on whichever node it landed: registration, then the bridge between the
/// sealed stream and the device's entity (which may live on another node). It keeps the stream
/// alive with pings and hands the writer loop only what the agent must see; a client that cannot
/// keep up is disconnected (it resumes from its last version on reconnect).
/// </summary>
public sealed class SessionActor : ReceiveActor, IWithTimers
{
    private static readonly TimeSpan PingInterval = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan SilenceLimit = TimeSpan.FromSeconds(90);
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(10);

    private readonly MachineKey _machine;
    private readonly ChannelWriter<byte[]> _outbound;
    private readonly SessionServices _services;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private string? _deviceId;
    private string? _tailnetId;
    private DateTimeOffset _lastHeard;
    private ulong _pingNonce;

    public SessionActor(MachineKey machine, ChannelWriter<byte[]> outbound, SessionServices services)
    {
        _machine = machine;
        _outbound = outbound;
        _services = services;
        _lastHeard = services.Clock.GetUtcNow();

        ReceiveAsync<ClientFrameArrived>(OnClientMessage);
        Receive<DeliverToAgent>(deliver => Send(deliver.ServerMessage));
        Receive<SessionEnded>(ended => Close(ended.Code, ended.Message));
        Receive<StreamClosed>(_ => Context.Stop(Self));
        Receive<KeepAlive>(_ => OnKeepAlive());
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props PropsFor(MachineKey machine, ChannelWriter<byte[]> outbound, SessionServices services) =>
        Props.Create(() => new SessionActor(machine, outbound, services));

    private string MachineHex => _machine.Key.ToHex();

    protected override void PreStart() => Timers.StartPeriodicTimer("keepalive", KeepAlive.Instance, PingInterval);

    private async Task OnClientMessage(ClientFrameArrived arrived)
    {
        _lastHeard = _services.Clock.GetUtcNow();
        var message = arrived.Message;
        switch (message.BodyCase)
        {
            case ClientMessage.BodyOneofCase.Register:
                var result = await Register(message.Register);
                Send(new ServerMessage { RegisterResult = result });
                break;
            case ClientMessage.BodyOneofCase.Subscribe:
                if (!RequireDevice()) return;
                _services.Devices.Tell(new AttachSession(_deviceId!, Self, message.Subscribe.LastVersion));
                break;
            case ClientMessage.BodyOneofCase.Endpoints:
                if (!RequireDevice()) return;
                var update = message.Endpoints;
                if (update.Endpoints.Count > TailnetState.MaxEndpoints || update.Endpoints.Any(e => !IPEndPoint.TryParse(e, out var ep) || ep.Port == 0)
                    || update.DiscoKey.Length is not (0 or 32))
                {
                    SendError(ControlErrorCodes.InvalidRequest, $"endpoints must be at most {TailnetState.MaxEndpoints} IP:port values, and the disco key 32 bytes");
                    return;
                }
                // Straight to the tailnet: it stores them in its device index and patches the peers.
                _services.Tailnets.Tell(new UpdateDeviceEndpoints(_tailnetId!, _deviceId!, [.. update.Endpoints], update.HomeRelay, Convert.ToHexStringLower(update.DiscoKey.Span)));
                break;
            case ClientMessage.BodyOneofCase.Hostinfo:
                if (!RequireDevice()) return;
                var info = message.Hostinfo;
                _services.Devices.Tell(new ReportHostinfo(_deviceId!, Truncate(info.Hostname, 255), Truncate(info.Os, 64), Truncate(info.AgentVersion, 64)));
                break;
            case ClientMessage.BodyOneofCase.RotateNodeKey:
                if (!RequireDevice()) return;
                Rotate(message.RotateNodeKey);
                break;
            case ClientMessage.BodyOneofCase.Ping:
                Send(new ServerMessage { Pong = new Pong { Nonce = message.Ping.Nonce } });
                break;
            case ClientMessage.BodyOneofCase.Pong:
                break;
            case ClientMessage.BodyOneofCase.Logout:
                if (!RequireDevice()) return;
                await LogOut();
                break;
            default:
                SendError(ControlErrorCodes.FrameMalformed, "empty or unknown client message");
                break;
        }
    }

    /// <summary>The agent logs out: its node key is expired (peers drop it at once), then the agent hears it is out.</summary>
    private async Task LogOut()
    {
        try
        {
            var outcome = await _services.Tailnets.Ask<object>(new ExpireDevice(_tailnetId!, _deviceId!, _services.Clock.GetUtcNow()), AskTimeout);
            if (outcome is Rejection rejection)
            {
                SendError(rejection.Code, rejection.Message);
                return;
            }
            _log.Info("Device {0} logged out", _deviceId);
            Send(new ServerMessage { LoggedOut = new LoggedOut() });
        }
        catch (AskTimeoutException)
        {
            SendError(ControlErrorCodes.Unavailable, "the cluster did not answer in time; retry");
        }
    }

    private async Task<RegisterResult> Register(RegisterRequest request)
    {
        RegisterResult Refuse(string code, string message) => new() { Status = RegisterResult.Types.Status.Refused, RefusalCode = code, RefusalMessage = message };

        if (request.NodeKey.Length != 32) return Refuse(ControlErrorCodes.InvalidRequest, "node_key must be 32 bytes");
        if (request.DiscoKey.Length is not (0 or 32)) return Refuse(ControlErrorCodes.InvalidRequest, "disco_key must be 32 bytes");
        var nodeKey = new Curve25519PublicKey(request.NodeKey.Span);
        if (!NodeKeyProof.Verify(_services.CoordinatorKey, nodeKey, _machine.Key, request.NodeKeyProof.Span))
            return Refuse(ControlErrorCodes.NodeKeyProofInvalid, "the node key proof does not verify: the agent must hold the node key's private half");

        AuthKeyToken? authKey = null;
        if (request.AuthKey.Length > 0 && !AuthKeyToken.TryParse(request.AuthKey, out authKey))
            return Refuse(ControlErrorCodes.AuthKeyUnknown, "the auth key is not a Weft auth key (weft-auth.<tailnet>.<id>.<secret>)");

        try
        {
            var binding = await _services.Machines.Ask<object>(new LookupMachine(MachineHex), AskTimeout) as MachineBinding;
            string tailnetId;
            if (binding is not null)
            {
                tailnetId = binding.TailnetId;
                if (authKey is not null && authKey.TailnetId != tailnetId)
                    return Refuse(ControlErrorCodes.MachineInOtherTailnet, "this machine is registered in another tailnet; log out (or have it deleted) before joining another");
            }
            else if (authKey is not null)
            {
                tailnetId = authKey.TailnetId;
            }
            else if (request.Tailnet.Length > 0)
            {
                var found = await _services.Directory.Ask<object>(new FindTailnet(request.Tailnet), AskTimeout);
                if (found is not TailnetEntry entry) return Refuse(ControlErrorCodes.TailnetUnknown, $"there is no tailnet '{Truncate(request.Tailnet, 80)}'");
                tailnetId = entry.TailnetId;
            }
            else
            {
                return Refuse(ControlErrorCodes.InvalidRequest, "give an auth key, or name the tailnet to wait for an admin's approval");
            }

            var register = new RegisterDevice(tailnetId, "dev_" + Identifiers.RandomBase32(12), MachineHex, nodeKey.ToHex(),
                Convert.ToHexStringLower(request.DiscoKey.Span), Truncate(request.Hostname, 255), Truncate(request.Os, 64),
                authKey?.KeyId, authKey?.SecretHash, _services.Clock.GetUtcNow());
            var outcome = await _services.Tailnets.Ask<object>(register, AskTimeout);
            if (outcome is Rejection rejection)
            {
                if (rejection.Code != Contracts.Admin.ApiErrorCodes.NotFound) return Refuse(rejection.Code, rejection.Message);
                // A key naming a tailnet that does not exist is just an invalid key: say nothing about tailnets.
                return authKey is not null
                    ? Refuse(ControlErrorCodes.AuthKeyUnknown, "the auth key is not valid for this tailnet")
                    : Refuse(ControlErrorCodes.TailnetUnknown, $"there is no tailnet '{Truncate(request.Tailnet, 80)}'");
            }
            var device = ((DeviceRegistration)outcome).Device;

            await _services.Machines.Ask<object>(new BindMachine(MachineHex, tailnetId, device.DeviceId), AskTimeout);
            var ready = await _services.Devices.Ask<object>(new InitializeDevice(device.DeviceId, tailnetId, MachineHex, device.NodeKey, device.DiscoKey, device.Hostname, device.Os), AskTimeout);
            if (ready is Rejection initFailed) return Refuse(initFailed.Code, initFailed.Message);

            _deviceId = device.DeviceId;
            _tailnetId = tailnetId;
            var result = new RegisterResult
            {
                Status = device.Status switch
                {
                    DeviceStatus.Active => RegisterResult.Types.Status.Authorized,
                    DeviceStatus.Pending => RegisterResult.Types.Status.PendingApproval,
                    _ => RegisterResult.Types.Status.Refused,
                },
                DeviceId = device.DeviceId,
                TailnetId = tailnetId,
                Addresses = { device.Ipv4, device.Ipv6 },
                Name = device.Name,
            };
            if (device.KeyExpiry is { } expiry) result.KeyExpiry = Timestamp.FromDateTimeOffset(expiry);
            if (device.Status == DeviceStatus.Expired)
            {
                result.RefusalCode = ControlErrorCodes.DeviceExpired;
                result.RefusalMessage = "this device's node key expired; re-authorise it: weft-agent up --auth-key KEY --force-reauth";
            }
            return result;
        }
        catch (AskTimeoutException)
        {
            return Refuse(ControlErrorCodes.Unavailable, "the cluster did not answer in time; retry");
        }
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
        _services.Devices.Tell(new RequestNodeKeyRotation(_deviceId!, oldKey.ToHex(), newKey.ToHex(), _services.Clock.GetUtcNow()), Self);
    }

    private bool RequireDevice()
    {
        if (_deviceId is not null) return true;
        SendError(ControlErrorCodes.NotRegistered, "register first");
        return false;
    }

    private void OnKeepAlive()
    {
        if (_services.Clock.GetUtcNow() - _lastHeard > SilenceLimit)
        {
            Close(ControlErrorCodes.Unavailable, $"nothing heard from the agent for {SilenceLimit.TotalSeconds:0} s");
            return;
        }
        Send(new ServerMessage { Ping = new Ping { Nonce = ++_pingNonce } });
    }

    private void Send(IMessage message) => Send(message.ToByteArray());

    private void Send(byte[] serverMessage)
    {
        if (_outbound.TryWrite(serverMessage)) return;
        // The agent does not read fast enough: drop it; it resumes from its last version on reconnect.
        _log.Warning("Session of machine {0} cannot keep up; closing it", _machine);
        _outbound.TryComplete();
        Context.Stop(Self);
    }

    private void SendError(string code, string message) => Send(new ServerMessage { Error = new Weft.Contracts.Control.Error { Code = code, Message = message } });

    private void Close(string code, string message)
    {
        SendError(code, message);
        _outbound.TryComplete();
        Context.Stop(Self);
    }

    private static string Truncate(string value, int max) => value.Length <= max ? value : value[..max];

    private sealed class KeepAlive
    {
        public static readonly KeepAlive Instance = new();
    }
}
