using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Tunnels;

namespace Weft.NodeAgent.Agent;

/// <summary>A ping through the local API: <c>POST /localapi/v0/ping {"target":"web","count":3}</c>.</summary>
public sealed record PingRequest
{
    public string? Target { get; init; }
    public int? Count { get; init; }
    public int? TimeoutMs { get; init; }
    public bool Ipv6 { get; init; }
}

/// <summary>Every failure the local API answers: a stable code for scripts and a sentence for people.</summary>
public sealed record LocalApiError(string Code, string Error);

/// <summary>Where the agent stands after up, down, login or set.</summary>
public sealed record LocalDone(string State, string Detail)
{
    public string? Code { get; init; }

    /// <summary>While waiting for a person to sign in: the link to open.</summary>
    public string? LoginUrl { get; init; }
}

public sealed record PingResult(string Target, string Address, int Sent, int Received, IReadOnlyList<PingLine> Replies);

public sealed record PingLine(int Sequence, double? Milliseconds, string? Via);

/// <summary>
/// The daemon's local API, as Tailscale's LocalAPI: HTTP with JSON in and out on a unix socket next
/// to the agent state (mode 0600), served by Kestrel. Only root, or the user the daemon runs as, may
/// use it: the socket's mode says so, and each connection's credentials (SO_PEERCRED) are checked
/// again in case the mode was loosened. The CLI is one client; <c>curl --unix-socket</c> is another.
/// <list type="bullet">
/// <item><c>GET status</c>, <c>GET prefs</c>, <c>GET netcheck</c>, <c>GET dns</c></item>
/// <item><c>POST up</c>, <c>POST login</c> (a <see cref="PrefsChange"/>; both connect and wait until the agent runs, waits for approval or is refused), <c>POST set</c> (prefs only)</item>
/// <item><c>POST down</c>, <c>POST logout</c>, <c>POST rotate-node-key</c>, <c>POST ping</c> (a <see cref="PingRequest"/>)</item>
/// </list>
/// </summary>
public sealed class LocalApi : IAsyncDisposable
{
    public const string SocketName = "weft-agent.sock";
    public const string PathPrefix = "/localapi/v0/";
    public const int MaxRequestBytes = 4096;
    private const int MaxPings = 100;
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(10);
    /// <summary>How long <c>up</c> and <c>login</c> wait for the coordinator's answer before they say where the agent stands.</summary>
    private static readonly TimeSpan LoginWait = TimeSpan.FromSeconds(30);
    private static readonly string[] Commands = ["status", "prefs", "netcheck", "dns", "metrics", "ping", "up", "login", "set", "down", "logout", "rotate-node-key"];

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        // Read by people as much as by scripts: "agent's", not "agent\u0027s". Never embedded in HTML.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static readonly JsonSerializerOptions StrictRequest = new(JsonSerializerDefaults.Web) { UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow };

    private readonly AgentDaemon _daemon;
    private readonly WebApplication _app;
    private readonly uint _ownUid = geteuid();

    private LocalApi(AgentDaemon daemon, WebApplication app, string socketPath)
    {
        _daemon = daemon;
        _app = app;
        SocketPath = socketPath;
    }

    public string SocketPath { get; }

    /// <summary>Serves <paramref name="daemon"/>, which has made sure no other agent answers on this socket (<see cref="AnswersAsync"/>).</summary>
    /// <exception cref="IOException">The socket cannot be bound.</exception>
    public static async Task<LocalApi> StartAsync(string stateDirectory, AgentDaemon daemon)
    {
        var path = Path.Combine(stateDirectory, SocketName);
        Directory.CreateDirectory(stateDirectory);
        File.Delete(path); // left by a daemon that died
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = MaxRequestBytes;
            kestrel.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
            kestrel.ListenUnixSocket(path);
        });
        // The agent's metrics (AgentMetrics), as Prometheus text at /localapi/v0/metrics.
        builder.Services.AddSingleton(_ => new AgentMetrics(daemon));
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(AgentMetrics.MeterName)
            .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0));
        var app = builder.Build();
        app.Services.GetRequiredService<AgentMetrics>(); // its instruments exist from the start
        var api = new LocalApi(daemon, app, path);
        app.Use(api.OnlyOwner);
        app.MapGet(PathPrefix + "status", () => api.Reply(api.Status()));
        app.MapGet(PathPrefix + "prefs", () => api.Reply(Task.FromResult<object>(daemon.Prefs)));
        app.MapGet(PathPrefix + "netcheck", () => api.Reply(api.Netcheck()));
        app.MapGet(PathPrefix + "dns", () => api.Reply(Task.FromResult(daemon.DnsStatus)));
        app.MapPrometheusScrapingEndpoint(PathPrefix + "metrics");
        app.MapPost(PathPrefix + "ping", (Delegate)((HttpContext http) => api.WithBody<PingRequest>(http, api.Ping)));
        app.MapPost(PathPrefix + "up", (Delegate)((HttpContext http) => api.WithBody<PrefsChange>(http, api.LogIn)));
        app.MapPost(PathPrefix + "login", (Delegate)((HttpContext http) => api.WithBody<PrefsChange>(http, api.LogIn)));
        app.MapPost(PathPrefix + "set", (Delegate)((HttpContext http) => api.WithBody<PrefsChange>(http, change => daemon.ReconfigureAsync(change, connect: false))));
        app.MapPost(PathPrefix + "down", () => api.Reply(api.Down()));
        app.MapPost(PathPrefix + "logout", () => api.Reply(api.LogOut()));
        app.MapPost(PathPrefix + "rotate-node-key", () => api.Reply(Task.FromResult<object>(api.RotateNodeKey())));
        app.MapFallback((HttpContext http) => Results.Json(
            http.Request.Path.StartsWithSegments(PathPrefix.TrimEnd('/'), out var command) && Commands.Contains(command.Value?.TrimStart('/') ?? "")
                ? new LocalApiError("wrong_method", $"{http.Request.Method} is not how {http.Request.Path} is asked (status, prefs, netcheck, dns and metrics are GET; the rest POST)")
                : new LocalApiError("unknown_command", $"unknown command '{Truncate(http.Request.Path.Value ?? "")}'; the commands are {PathPrefix}{{{string.Join(", ", Commands)}}}"),
            Json, statusCode: StatusCodes.Status404NotFound));
        await app.StartAsync();
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return api;
    }

    /// <summary>Refuses every caller but root and the daemon's own user, whatever the socket's mode.</summary>
    private async Task OnlyOwner(HttpContext http, Func<Task> next)
    {
        if (http.Features.Get<IConnectionSocketFeature>()?.Socket is { } socket && PeerUid(socket) is { } uid && uid != 0 && uid != _ownUid)
        {
            await Write(http, new LocalApiError("forbidden", $"the agent's local API is for root only (you are uid {uid})"));
            return;
        }
        await next();
    }

    private async Task<IResult> Reply(Task<object> answer)
    {
        try
        {
            return Answer(await answer);
        }
        catch (AskTimeoutException)
        {
            return Answer(new LocalApiError("timeout", "the agent did not answer in time"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The prefs could not be written (a full or read-only disk): the change was not taken.
            return Answer(new LocalApiError("state_unwritable", $"the daemon cannot write its state: {e.Message}"));
        }
    }

    /// <summary>Reads and checks a JSON body (at most <see cref="MaxRequestBytes"/>, no unknown fields), then runs <paramref name="run"/> on it.</summary>
    private async Task<IResult> WithBody<T>(HttpContext http, Func<T, Task<object>> run) where T : new()
    {
        var buffer = new byte[MaxRequestBytes + 1];
        var length = 0;
        try
        {
            int read;
            while (length < buffer.Length && (read = await http.Request.Body.ReadAsync(buffer.AsMemory(length), http.RequestAborted)) > 0) length += read;
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            length = buffer.Length;
        }
        if (length > MaxRequestBytes) return Answer(new LocalApiError("request_too_large", $"a request body is at most {MaxRequestBytes} bytes"));
        T? request;
        try
        {
            request = length == 0 ? new T() : JsonSerializer.Deserialize<T>(buffer.AsSpan(0, length), StrictRequest);
        }
        catch (JsonException e)
        {
            return Answer(new LocalApiError("malformed_request", $"the body is not the JSON {http.Request.Path} takes: {e.Message}"));
        }
        if (request is null) return Answer(new LocalApiError("malformed_request", "the body is null"));
        return await Reply(run(request));
    }

    private static IResult Answer(object answer) => Results.Json(answer, Json, statusCode: StatusOf(answer));

    private static async Task Write(HttpContext http, LocalApiError error)
    {
        http.Response.StatusCode = StatusOf(error);
        await http.Response.WriteAsJsonAsync(error, Json, "application/json");
    }

    private static int StatusOf(object answer) => answer is not LocalApiError error ? StatusCodes.Status200OK : error.Code switch
    {
        "forbidden" => StatusCodes.Status403Forbidden,
        "malformed_request" or "invalid_prefs" or "unknown_peer" => StatusCodes.Status400BadRequest,
        "request_too_large" => StatusCodes.Status413PayloadTooLarge,
        "timeout" => StatusCodes.Status504GatewayTimeout,
        "state_unwritable" => StatusCodes.Status500InternalServerError,
        "unknown_command" => StatusCodes.Status404NotFound,
        _ => StatusCodes.Status409Conflict, // the agent's state does not allow it: no tunnels, not logged in, refused
    };

    private async Task<object> Status()
    {
        var status = await _daemon.Control.Ask<AgentStatus>(GetAgentStatus.Instance, AskTimeout);
        if (_daemon.DataPlane is not { } plane) return status;
        var tunnels = (await plane.Ask<TunnelStatsReply>(GetTunnelStats.Instance, AskTimeout)).Tunnels;
        var routing = await plane.Ask<RoutingStatus>(GetRoutingStatus.Instance, AskTimeout);
        return status.WithTunnels(tunnels) with { Routing = routing };
    }

    private async Task<object> Netcheck() => _daemon.DataPlane is not { } plane
        ? new LocalApiError("no_tunnels", "this agent runs without tunnels (--no-tunnels): it has no socket to probe from")
        : await plane.Ask<Paths.NetcheckReport>(Paths.GetNetcheck.Instance, AskTimeout);

    private async Task<object> Ping(PingRequest request)
    {
        if (_daemon.DataPlane is not { } plane || _daemon.Device?.Pinger is not { } pinger) return new LocalApiError("no_tunnels", "this agent runs without tunnels (--no-tunnels)");
        if (string.IsNullOrWhiteSpace(request.Target)) return new LocalApiError("malformed_request", "ping needs a \"target\": a peer's name or tailnet address");
        var count = request.Count ?? 3;
        if (count is < 1 or > MaxPings) return new LocalApiError("malformed_request", $"\"count\" must be 1 to {MaxPings}");
        var timeout = TimeSpan.FromMilliseconds(request.TimeoutMs ?? 2000);
        if (timeout < TimeSpan.FromMilliseconds(10) || timeout > TimeSpan.FromSeconds(10)) return new LocalApiError("malformed_request", "\"timeoutMs\" must be 10 to 10000");

        var resolved = await plane.Ask<object>(new ResolvePeer(request.Target, request.Ipv6), AskTimeout);
        if (resolved is PeerNotFound missing) return new LocalApiError("unknown_peer", missing.Reason);
        var peer = (PeerResolved)resolved;
        var lines = new List<PingLine>();
        for (var sequence = 1; sequence <= count; sequence++)
        {
            var reply = await pinger.PingAsync(_daemon.Device, peer.Source, peer.Address, timeout);
            lines.Add(new PingLine(sequence, reply?.RoundTrip.TotalMilliseconds, reply?.Via));
            if (reply is not null && sequence < count) await Task.Delay(TimeSpan.FromMilliseconds(200));
        }
        return new PingResult(peer.Name, peer.Address.ToString(), count, lines.Count(l => l.Milliseconds is not null), lines);
    }

    /// <summary><c>up</c> and <c>login</c>: take the change, then wait until the coordinator has answered (or <see cref="LoginWait"/> passed).</summary>
    private async Task<object> LogIn(PrefsChange change)
    {
        var taken = await _daemon.ReconfigureAsync(change, connect: true);
        if (taken is LocalApiError) return taken;
        var deadline = DateTime.UtcNow + LoginWait;
        while (true)
        {
            var status = await _daemon.Control.Ask<AgentStatus>(GetAgentStatus.Instance, AskTimeout);
            var settled = status.State is not (ControlState.Connecting or ControlState.Registering);
            if (settled || DateTime.UtcNow > deadline)
            {
                if (status.State == ControlState.NeedsLogin) return new LocalApiError(status.Code ?? "needs_login", status.Detail);
                return new LocalDone(StateName(status.State), status.Detail) { Code = status.Code, LoginUrl = status.LoginUrl };
            }
            await Task.Delay(100);
        }
    }

    private async Task<object> Down()
    {
        _daemon.Down();
        if (_daemon.DataPlane is { } plane)
        {
            // Answer only once the tunnels are gone and the system's resolver is as it was: after "down"
            // returns, nothing passes and no name goes to MagicDNS.
            for (var attempt = 0; attempt < 50; attempt++)
            {
                if ((await plane.Ask<TunnelStatsReply>(GetTunnelStats.Instance, AskTimeout)).Tunnels.Count == 0 && !_daemon.DnsWantsSystem) break;
                await Task.Delay(100);
            }
            await _daemon.DnsSettledAsync();
        }
        var status = await _daemon.Control.Ask<AgentStatus>(GetAgentStatus.Instance, AskTimeout);
        return new LocalDone(StateName(status.State), status.Detail) { Code = status.Code };
    }

    private async Task<object> LogOut() => await _daemon.LogOutAsync();

    private LocalDone RotateNodeKey()
    {
        _daemon.Control.Tell(RotateNodeKeyNow.Instance);
        return new LocalDone("rotating", "asked the coordinator to rotate this device's node key; peers re-handshake with the new one");
    }

    public static string StateName(ControlState state) => JsonNamingPolicy.KebabCaseLower.ConvertName(state.ToString());

    private static string Truncate(string text) => text.Length <= 40 ? text : text[..40] + "…";

    /// <summary>The connecting process's uid (SO_PEERCRED: struct ucred { pid, uid, gid }), or null where the OS does not say.</summary>
    private static uint? PeerUid(Socket connection)
    {
        if (!OperatingSystem.IsLinux() || connection.AddressFamily != AddressFamily.Unix) return null;
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

    // ------------------------------------------------------------------ the client side (the CLI, tests)

    /// <summary>An HTTP client whose every connection is to the agent's socket in <paramref name="stateDirectory"/>.</summary>
    public static HttpClient Client(string stateDirectory, TimeSpan? timeout = null)
    {
        var socket = Path.Combine(stateDirectory, SocketName);
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancel) =>
            {
                var connection = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await connection.ConnectAsync(new UnixDomainSocketEndPoint(socket), cancel);
                    return new NetworkStream(connection, ownsSocket: true);
                }
                catch
                {
                    connection.Dispose();
                    throw;
                }
            },
        };
        return new HttpClient(handler) { BaseAddress = new Uri("http://local-weft-agent" + PathPrefix), Timeout = timeout ?? TimeSpan.FromSeconds(100) };
    }

    /// <summary>Asks the agent one command (GET without a body, POST with one) and returns its JSON answer and HTTP status.</summary>
    /// <exception cref="HttpRequestException">No agent answers on the socket.</exception>
    public static async Task<(HttpStatusCode Status, JsonDocument Answer)> QueryAsync(string stateDirectory, string command, object? body, CancellationToken cancel)
    {
        using var client = Client(stateDirectory, Timeout.InfiniteTimeSpan);
        using var response = command is "status" or "prefs" or "netcheck" or "dns"
            ? await client.GetAsync(command, cancel)
            : await client.PostAsync(command, JsonContent(body), cancel);
        await using var stream = await response.Content.ReadAsStreamAsync(cancel);
        return (response.StatusCode, await JsonDocument.ParseAsync(stream, cancellationToken: cancel));
    }

    private static HttpContent JsonContent(object? body) =>
        new StringContent(body is null ? "{}" : JsonSerializer.Serialize(body, body.GetType(), Json), System.Text.Encoding.UTF8, "application/json");

    /// <summary>Whether a daemon answers on the socket in <paramref name="stateDirectory"/>.</summary>
    public static async Task<bool> AnswersAsync(string stateDirectory)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        try
        {
            using var _ = (await QueryAsync(stateDirectory, "status", null, timeout.Token)).Answer;
            return true;
        }
        catch (Exception e) when (e is HttpRequestException or SocketException or IOException or JsonException or OperationCanceledException)
        {
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        using (var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(5))) await _app.StopAsync(stopping.Token);
        await _app.DisposeAsync();
        try
        {
            File.Delete(SocketPath);
        }
        catch (IOException)
        {
        }
    }
}
