using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Tunnels;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Agent;

/// <summary>One request on the local API: a single line of JSON, e.g. <c>{"command":"ping","target":"web","count":3}</c>.</summary>
public sealed record LocalRequest
{
    public string? Command { get; init; }
    public string? Target { get; init; }
    public int? Count { get; init; }
    public int? TimeoutMs { get; init; }
    public bool Ipv6 { get; init; }
}

public sealed record LocalApiError(string Code, string Error);

public sealed record LocalDone(string State, string Detail);

public sealed record PingResult(string Target, string Address, int Sent, int Received, IReadOnlyList<PingLine> Replies);

public sealed record PingLine(int Sequence, double? Milliseconds, string? Via);

/// <summary>
/// The running agent's local API, which the CLI talks to: a unix socket next to the agent state,
/// mode 0600, and only for root (or the user the agent runs as), checked again with the caller's
/// credentials (SO_PEERCRED) in case the socket's mode was loosened. A client writes one line of
/// JSON and reads one JSON document. Commands: status, ping, up, down, logout, rotate-node-key.
/// </summary>
public sealed class LocalApi : IDisposable
{
    public const string SocketName = "weft-agent.sock";
    public const int MaxRequestBytes = 4096;
    private const int MaxPings = 100;
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(10);
    private static readonly string[] Commands = ["status", "ping", "netcheck", "up", "down", "logout", "rotate-node-key"];

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private static readonly JsonSerializerOptions StrictRequest = new(JsonSerializerDefaults.Web) { UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow };

    private readonly IActorRef _control;
    private readonly IActorRef? _dataPlane;
    private readonly WireGuardDevice? _device;
    private readonly UnixSocketServer _socket;
    private readonly uint _ownUid = geteuid();

    public LocalApi(string stateDirectory, IActorRef control, IActorRef? dataPlane, WireGuardDevice? device)
    {
        _control = control;
        _dataPlane = dataPlane;
        _device = device;
        _socket = new UnixSocketServer(Path.Combine(stateDirectory, SocketName), UnixFileMode.UserRead | UnixFileMode.UserWrite, Serve);
    }

    public string SocketPath => _socket.Path;

    private async Task Serve(Socket connection, CancellationToken stop)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        object reply;
        var caller = PeerUid(connection);
        if (caller is { } uid && uid != 0 && uid != _ownUid)
        {
            reply = new LocalApiError("forbidden", $"the agent's local API is for root only (you are uid {uid})");
        }
        else
        {
            var line = await ReadLine(connection, timeout.Token);
            reply = line is null
                ? new LocalApiError("request_too_large", $"send one line of JSON of at most {MaxRequestBytes} bytes")
                : await Handle(line);
        }
        await connection.SendAsync(JsonSerializer.SerializeToUtf8Bytes(reply, reply.GetType(), Json), SocketFlags.None, timeout.Token);
        connection.Shutdown(SocketShutdown.Send);
        // Read what the client still sends (an oversized request): closing with unread data would
        // reset the connection and lose the answer on the way.
        var sink = new byte[4096];
        for (var drained = 0; drained < 1 << 20; drained += sink.Length)
            if (await connection.ReceiveAsync(sink, SocketFlags.None, timeout.Token) == 0) break;
    }

    /// <summary>Parses and runs one request; every failure is a <see cref="LocalApiError"/>, never an exception.</summary>
    public async Task<object> Handle(string line)
    {
        LocalRequest? request;
        try
        {
            request = JsonSerializer.Deserialize<LocalRequest>(line, StrictRequest);
        }
        catch (JsonException e)
        {
            return new LocalApiError("malformed_request", $"the request is not valid JSON of the form {{\"command\": \"status\"}}: {e.Message}");
        }
        if (request?.Command is not { } command) return new LocalApiError("malformed_request", "the request has no \"command\"");
        try
        {
            return command switch
            {
                "status" => await Status(),
                "ping" => await Ping(request),
                "netcheck" => _dataPlane is null
                    ? new LocalApiError("no_tunnels", "this agent runs without tunnels (--no-tunnels): it has no socket to probe from")
                    : await _dataPlane.Ask<Paths.NetcheckReport>(Paths.GetNetcheck.Instance, AskTimeout),
                "up" => await Want(true),
                "down" => await Want(false),
                "logout" => await _control.Ask<LogoutResult>(LogOut.Instance, AskTimeout + AskTimeout),
                "rotate-node-key" => RotateNodeKey(),
                _ => new LocalApiError("unknown_command", $"unknown command '{Truncate(command)}'; the commands are: {string.Join(", ", Commands)}"),
            };
        }
        catch (AskTimeoutException)
        {
            return new LocalApiError("timeout", "the agent did not answer in time");
        }
    }

    private async Task<object> Status()
    {
        var status = await _control.Ask<AgentStatus>(GetAgentStatus.Instance, AskTimeout);
        if (_dataPlane is null) return status;
        var tunnels = (await _dataPlane.Ask<TunnelStatsReply>(GetTunnelStats.Instance, AskTimeout)).Tunnels
            .ToDictionary(t => "nodekey:" + t.PublicKey);
        var routing = await _dataPlane.Ask<RoutingStatus>(GetRoutingStatus.Instance, AskTimeout);
        return status with { Peers = [.. status.Peers.Select(p => p with { Tunnel = tunnels.GetValueOrDefault(p.NodeKey) })], Routing = routing };
    }

    private async Task<object> Ping(LocalRequest request)
    {
        if (_dataPlane is null || _device?.Pinger is not { } pinger) return new LocalApiError("no_tunnels", "this agent runs without tunnels (--no-tunnels)");
        if (string.IsNullOrWhiteSpace(request.Target)) return new LocalApiError("malformed_request", "ping needs a \"target\": a peer's name or tailnet address");
        var count = request.Count ?? 3;
        if (count is < 1 or > MaxPings) return new LocalApiError("malformed_request", $"\"count\" must be 1 to {MaxPings}");
        var timeout = TimeSpan.FromMilliseconds(request.TimeoutMs ?? 2000);
        if (timeout < TimeSpan.FromMilliseconds(10) || timeout > TimeSpan.FromSeconds(10)) return new LocalApiError("malformed_request", "\"timeoutMs\" must be 10 to 10000");

        var resolved = await _dataPlane.Ask<object>(new ResolvePeer(request.Target, request.Ipv6), AskTimeout);
        if (resolved is PeerNotFound missing) return new LocalApiError("unknown_peer", missing.Reason);
        var peer = (PeerResolved)resolved;
        var lines = new List<PingLine>();
        for (var sequence = 1; sequence <= count; sequence++)
        {
            var reply = await pinger.PingAsync(_device, peer.Source, peer.Address, timeout);
            lines.Add(new PingLine(sequence, reply?.RoundTrip.TotalMilliseconds, reply?.Via));
            if (reply is not null && sequence < count) await Task.Delay(TimeSpan.FromMilliseconds(200));
        }
        return new PingResult(peer.Name, peer.Address.ToString(), count, lines.Count(l => l.Milliseconds is not null), lines);
    }

    private async Task<object> Want(bool running)
    {
        _control.Tell(new SetWantRunning(running));
        if (!running && _dataPlane is not null)
        {
            // Answer only once the tunnels are gone: after "down" returns, nothing passes.
            for (var attempt = 0; attempt < 50; attempt++)
            {
                if ((await _dataPlane.Ask<TunnelStatsReply>(GetTunnelStats.Instance, AskTimeout)).Tunnels.Count == 0) break;
                await Task.Delay(100);
            }
        }
        var status = await _control.Ask<AgentStatus>(GetAgentStatus.Instance, AskTimeout);
        return new LocalDone(JsonNamingPolicy.KebabCaseLower.ConvertName(status.State.ToString()), status.Detail);
    }

    private LocalDone RotateNodeKey()
    {
        _control.Tell(RotateNodeKeyNow.Instance);
        return new LocalDone("rotating", "asked the coordinator to rotate this device's node key; peers re-handshake with the new one");
    }

    private static string Truncate(string text) => text.Length <= 40 ? text : text[..40] + "…";

    private static async Task<string?> ReadLine(Socket connection, CancellationToken cancel)
    {
        var buffer = new byte[MaxRequestBytes];
        var length = 0;
        while (length < buffer.Length)
        {
            var read = await connection.ReceiveAsync(buffer.AsMemory(length), SocketFlags.None, cancel);
            if (read == 0) break;
            length += read;
            var newline = Array.IndexOf(buffer, (byte)'\n', 0, length);
            if (newline >= 0) return Encoding.UTF8.GetString(buffer, 0, newline).Trim();
        }
        return length < MaxRequestBytes ? Encoding.UTF8.GetString(buffer, 0, length).Trim() : null;
    }

    /// <summary>The connecting process's uid (SO_PEERCRED: struct ucred { pid, uid, gid }), or null where the OS does not say.</summary>
    private static uint? PeerUid(Socket connection)
    {
        if (!OperatingSystem.IsLinux()) return null;
        const int SolSocket = 1, SoPeerCred = 17;
        Span<byte> credentials = stackalloc byte[12];
        try
        {
            return connection.GetRawSocketOption(SolSocket, SoPeerCred, credentials) == 12
                ? System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(credentials[4..]) : null;
        }
        catch (SocketException)
        {
            return null;
        }
    }

    [DllImport("libc")]
    private static extern uint geteuid();

    /// <summary>Sends one request to a running agent and returns its answer (the CLI side of the socket).</summary>
    public static async Task<JsonDocument> QueryAsync(string stateDirectory, object request, CancellationToken cancel)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(stateDirectory, SocketName)), cancel);
        var line = request as string ?? JsonSerializer.Serialize(request, Json).ReplaceLineEndings("");
        await socket.SendAsync(Encoding.UTF8.GetBytes(line + "\n"), SocketFlags.None, cancel);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        return await JsonDocument.ParseAsync(stream, cancellationToken: cancel);
    }

    public void Dispose() => _socket.Dispose();
}
