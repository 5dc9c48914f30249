using System.Collections.Immutable;
using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.Json;
using Akka.Actor;
using Serilog;
using Serilog.Events;
using Serilog.Extensions.Logging;
using Serilog.Formatting.Json;
using Weft.NodeAgent.Agent;
using Weft.Contracts.Control;
using Weft.NodeAgent.Control;

namespace Weft.NodeAgent.Cli;

/// <summary>
/// <c>weft-agent daemon</c> (the service, as <c>tailscaled</c>) and its clients, as <c>tailscale</c>:
/// <c>up</c>, <c>login</c>, <c>set</c>, <c>down</c>, <c>logout</c>, <c>status</c>, <c>ping</c>,
/// <c>netcheck</c> and <c>rotate-node-key</c> talk to it over its local API. <c>up --foreground</c>
/// is both in one process, for tests and containers. Every command takes <c>--json</c>, errors included.
/// </summary>
public static class ControlCommands
{
    public static string DefaultStateDirectory()
    {
        if (Environment.UserName == "root" || Environment.GetEnvironmentVariable("USER") == "root") return "/var/lib/weft-agent";
        var state = Environment.GetEnvironmentVariable("XDG_STATE_HOME");
        if (string.IsNullOrEmpty(state)) state = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state");
        return Path.Combine(state, "weft-agent");
    }

    private static Option<string> StateDirectoryOption() => new("--state-dir")
    {
        Description = "Where the daemon keeps its keys and prefs (mode 0600) and its local API socket; WEFT_AGENT_STATE_DIR, else /var/lib/weft-agent as root",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("WEFT_AGENT_STATE_DIR") ?? DefaultStateDirectory(),
    };

    private static Option<bool> JsonOption() => new("--json") { Description = "Print JSON (errors too: {\"code\": …, \"error\": …})" };

    /// <summary>
    /// The auth key from, first given: <c>--auth-key</c>, <c>--auth-key-file</c>, or <c>WEFT_AUTH_KEY</c>
    /// (the last two keep it out of the process list). None is fine: the device waits for approval.
    /// </summary>
    internal static bool TryReadAuthKey(string? given, string? file, out string? key, out string? problem)
    {
        key = null;
        problem = null;
        if (given is not null && file is not null)
        {
            problem = "give --auth-key or --auth-key-file, not both";
            return false;
        }
        if (file is not null)
        {
            try
            {
                if (new FileInfo(file).Length > 4096)
                {
                    problem = $"--auth-key-file {file} is larger than an auth key can be";
                    return false;
                }
                key = File.ReadAllText(file).Trim();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                problem = $"--auth-key-file {file} cannot be read: {e.Message}";
                return false;
            }
            if (key.Length == 0)
            {
                problem = $"--auth-key-file {file} is empty";
                return false;
            }
            return true;
        }
        key = given ?? (Environment.GetEnvironmentVariable("WEFT_AUTH_KEY") is { Length: > 0 } fromEnvironment ? fromEnvironment.Trim() : null);
        return true;
    }

    /// <summary>The flags that change prefs (up, login, set). Absent flags leave a pref as it was.</summary>
    private sealed class PrefFlags
    {
        public readonly Option<string?> LoginServer = new("--login-server") { Description = "Coordinator control URL(s), comma-separated, e.g. http://coord1:7650,http://coord2:7650 (remembered)" };
        public readonly Option<string?> AuthKey = new("--auth-key") { Description = "Auth key (weft-auth-…), used once and never stored; visible to local users in ps: prefer --auth-key-file or WEFT_AUTH_KEY. Without one the device waits for an admin's approval (give --tailnet)" };
        public readonly Option<string?> AuthKeyFile = new("--auth-key-file") { Description = "File holding the auth key" };
        public readonly Option<string?> Tailnet = new("--tailnet") { Description = "Tailnet to wait in for approval when no auth key is given (empty: none)" };
        public readonly Option<string?> Hostname = new("--hostname") { Description = "Name to register with (default: the machine's name)" };
        public readonly Option<bool> ForceReauth = new("--force-reauth") { Description = "Authorise this device again with the auth key (after its node key expired, or to move it)" };
        public readonly Option<string?> AdvertiseRoutes = new("--advertise-routes") { Description = "Subnet routes to offer, comma-separated CIDRs (e.g. 198.51.100.0/24; empty withdraws them); an admin or the policy's autoApprovers approves them" };
        public readonly Option<bool> AdvertiseExitNode = new("--advertise-exit-node") { Description = "Offer this device as an exit node (0.0.0.0/0 and ::/0), once approved (=false withdraws it)" };
        public readonly Option<bool> AcceptRoutes = new("--accept-routes") { Description = "Route traffic for peers' approved subnets through them (off by default, as Tailscale on Linux)" };
        public readonly Option<string?> ExitNode = new("--exit-node") { Description = "Send internet traffic through this exit node: a peer's name, FQDN or tailnet address (empty: none)" };
        public readonly Option<bool> AcceptDns = new("--accept-dns") { Description = "Make MagicDNS the system's resolver while up (default true; =false leaves /etc/resolv.conf alone)" };
        private readonly bool _login;

        public PrefFlags(Command command, bool login)
        {
            _login = login;
            foreach (var option in login ? new Option[] { LoginServer, AuthKey, AuthKeyFile, Tailnet, ForceReauth } : [LoginServer, Tailnet]) command.Add(option);
            foreach (var option in new Option[] { Hostname, AdvertiseRoutes, AdvertiseExitNode, AcceptRoutes, ExitNode, AcceptDns }) command.Add(option);
        }

        /// <summary>A switch's value when it was given, null when it was not (a bool option has an implicit result either way).</summary>
        private static bool? Given(ParseResult parse, Option<bool> option) => parse.GetResult(option) is { Implicit: false } ? parse.GetValue(option) : null;

        /// <summary>The change these flags ask for, or the problem with them.</summary>
        public PrefsChange? Read(ParseResult parse, out string? problem)
        {
            string? key = null;
            problem = null;
            if (_login && !TryReadAuthKey(parse.GetValue(AuthKey), parse.GetValue(AuthKeyFile), out key, out problem)) return null;
            var change = new PrefsChange
            {
                LoginServer = parse.GetValue(LoginServer),
                AuthKey = key,
                ForceReauth = _login && parse.GetValue(ForceReauth),
                Tailnet = parse.GetValue(Tailnet),
                Hostname = parse.GetValue(Hostname),
                AdvertiseRoutes = parse.GetValue(AdvertiseRoutes),
                AdvertiseExitNode = Given(parse, AdvertiseExitNode),
                AcceptRoutes = Given(parse, AcceptRoutes),
                ExitNode = parse.GetValue(ExitNode),
                AcceptDns = Given(parse, AcceptDns),
            };
            if (change.Problems() is { Count: > 0 } problems)
            {
                problem = string.Join("; ", problems);
                return null;
            }
            return change;
        }
    }

    /// <summary>The prefs change <c>weft-agent up|login|set</c> would send for <paramref name="arguments"/> (for tests).</summary>
    internal static PrefsChange? ParsePrefsChange(string command, string[] arguments, out string? problem)
    {
        var parsed = new Command(command);
        var flags = new PrefFlags(parsed, login: command != "set");
        return flags.Read(parsed.Parse(arguments), out problem);
    }

    /// <summary>How the daemon runs: its interface, ports and logs (<c>daemon</c>, and <c>up --foreground</c>).</summary>
    private sealed class DaemonFlags
    {
        public readonly Option<bool> NoTunnels = new("--no-tunnels") { Description = "Control plane only: no TUN, no WireGuard (needs no root); shows what it would connect to" };
        public readonly Option<string> Tun = new("--tun") { Description = "TUN interface name", DefaultValueFactory = _ => "weft0" };
        public readonly Option<int> Port = new("--port") { Description = "WireGuard UDP port (0: any free port)", DefaultValueFactory = _ => 41641 };
        public readonly Option<int> DnsPort = new("--dns-port") { Description = "MagicDNS port on the tailnet addresses", DefaultValueFactory = _ => 53 };
        public readonly Option<string[]> Endpoints = new("--endpoint") { Description = "Static endpoint ip:port to advertise (repeatable), before the discovered ones", AllowMultipleArgumentsPerToken = true };
        public readonly Option<bool> Snat = new("--snat-subnet-routes") { Description = "Masquerade traffic this router forwards onto its subnets and the internet (false: the LAN needs a route back to 100.64.0.0/10)", DefaultValueFactory = _ => true };
        public readonly Option<string> LogLevel = new("--log-level") { Description = "debug, information, warning or error", DefaultValueFactory = _ => "information" };
        public readonly Option<string> LogFormat = new("--log-format") { Description = "text or json (one JSON object per line)", DefaultValueFactory = _ => "text" };

        public DaemonFlags(Command command)
        {
            foreach (var option in new Option[] { NoTunnels, Tun, Port, DnsPort, Endpoints, Snat, LogLevel, LogFormat }) command.Add(option);
        }

        public IEnumerable<Option> All => [NoTunnels, Tun, Port, DnsPort, Endpoints, Snat, LogLevel, LogFormat];

        public AgentDaemonOptions? Read(ParseResult parse, string directory, out LogEventLevel level, out string? problem)
        {
            problem = null;
            level = LogEventLevel.Information;
            var levelText = parse.GetValue(LogLevel)!;
            if (!TryLevel(levelText, out level)) problem = $"--log-level '{levelText}' is not one of debug, information, warning, error";
            else if (parse.GetValue(LogFormat) is not ("text" or "json")) problem = $"--log-format must be text or json";
            var tunName = parse.GetValue(Tun)!;
            if (tunName.Length is 0 or > 15 || tunName.Any(c => c is '/' or ' ' or ':'))
                problem ??= $"--tun '{tunName}' is not an interface name (1-15 characters, no '/', ':' or spaces)";
            if (parse.GetValue(Port) is < 0 or > 65535 || parse.GetValue(DnsPort) is < 1 or > 65535)
                problem ??= "--port must be 0 to 65535 and --dns-port 1 to 65535";
            var advertised = parse.GetValue(Endpoints) ?? [];
            foreach (var endpoint in advertised)
                if (!IPEndPoint.TryParse(endpoint, out var parsed) || parsed.Port == 0)
                    problem ??= $"--endpoint '{endpoint}' is not ip:port";
            if (problem is not null) return null;
            return new AgentDaemonOptions
            {
                StateDirectory = directory,
                StaticEndpoints = [.. advertised],
                Tunnels = !parse.GetValue(NoTunnels),
                TunName = tunName,
                Port = parse.GetValue(Port),
                DnsPort = parse.GetValue(DnsPort),
                SnatSubnetRoutes = parse.GetValue(Snat),
                ActorLogLevel = level switch { LogEventLevel.Verbose or LogEventLevel.Debug => "DEBUG", LogEventLevel.Information => "INFO", LogEventLevel.Warning => "WARNING", _ => "ERROR" },
            };
        }

        public Serilog.Core.Logger Logger(ParseResult parse, LogEventLevel level)
        {
            var configuration = new LoggerConfiguration().MinimumLevel.Is(level)
                // Akka's own start-up and cluster-less chatter is Debug; the agent's actors log as themselves.
                .MinimumLevel.Override("Akka", LogEventLevel.Warning);
            return parse.GetValue(LogFormat) == "json"
                ? configuration.WriteTo.Console(new JsonFormatter(renderMessage: true)).CreateLogger()
                : configuration.WriteTo.Console(outputTemplate: "{Timestamp:HH:mm:ss.fff} {Level:u3} {Message:lj}{NewLine}{Exception}").CreateLogger();
        }

        private static bool TryLevel(string text, out LogEventLevel level)
        {
            level = text.ToLowerInvariant() switch
            {
                "trace" or "verbose" => LogEventLevel.Verbose,
                "debug" => LogEventLevel.Debug,
                "info" or "information" => LogEventLevel.Information,
                "warn" or "warning" => LogEventLevel.Warning,
                "error" => LogEventLevel.Error,
                _ => (LogEventLevel)(-1),
            };
            return level >= 0;
        }
    }

    public static Command Daemon()
    {
        var command = new Command("daemon", "Run the agent service (what the systemd unit runs): it owns the state directory, the TUN, the tunnels and the local API, and joins as its prefs say (weft-agent up sets them)");
        var stateDir = StateDirectoryOption();
        command.Add(stateDir);
        var flags = new DaemonFlags(command);
        command.SetAction(async (parse, cancel) =>
        {
            var options = flags.Read(parse, parse.GetValue(stateDir)!, out var level, out var problem);
            if (options is null) return Fail(false, "invalid_flags", problem!, 2);
            using var logger = flags.Logger(parse, level);
            return await RunDaemon(options, logger, change: null, cancel);
        });
        return command;
    }

    public static Command Up()
    {
        var up = new Command("up", "Connect this device to its tailnet: reconfigures the running daemon with the flags given (others stay as they were), brings it up, and waits until it runs or is refused");
        var stateDir = StateDirectoryOption();
        var json = JsonOption();
        var foreground = new Option<bool>("--foreground") { Description = "Run the daemon in this process instead (until interrupted): for tests and containers. The daemon's flags (--tun, --port, --log-level, …) go with it" };
        up.Add(stateDir);
        up.Add(json);
        up.Add(foreground);
        var prefs = new PrefFlags(up, login: true);
        var daemonFlags = new DaemonFlags(up);
        up.SetAction(async (parse, cancel) =>
        {
            var asJson = parse.GetValue(json);
            var change = prefs.Read(parse, out var problem);
            if (change is null) return Fail(asJson, "invalid_flags", problem!, 2);
            var directory = parse.GetValue(stateDir)!;
            if (parse.GetValue(foreground))
            {
                var options = daemonFlags.Read(parse, directory, out var level, out problem);
                if (options is null) return Fail(asJson, "invalid_flags", problem!, 2);
                using var logger = daemonFlags.Logger(parse, level);
                return await RunDaemon(options, logger, change, cancel);
            }
            if (daemonFlags.All.FirstOrDefault(o => parse.GetResult(o) is { Implicit: false }) is { } daemonOnly)
                return Fail(asJson, "invalid_flags", $"{daemonOnly.Name} is the daemon's (weft-agent daemon {daemonOnly.Name} …, or up --foreground)", 2);
            var asked = await Ask(directory, "up", change, asJson, cancel);
            return asked != 0 || asJson ? asked : await WaitForSignIn(directory, cancel);
        });
        return up;
    }

    public static Command Login() => PrefsCommand("login", "Log in (again) on the running daemon, e.g. after logout or with another auth key; the same flags as up");

    public static Command Set() => PrefsCommand("set", "Change prefs (hostname, routes, exit node, DNS, coordinators) without bringing the daemon up or down");

    /// <summary><c>login</c> and <c>set</c>: send the prefs change the flags ask for to the daemon.</summary>
    private static Command PrefsCommand(string name, string description)
    {
        var command = new Command(name, description);
        var stateDir = StateDirectoryOption();
        var json = JsonOption();
        command.Add(stateDir);
        command.Add(json);
        var prefs = new PrefFlags(command, login: name != "set");
        command.SetAction(async (parse, cancel) =>
        {
            var change = prefs.Read(parse, out var problem);
            return change is null
                ? Fail(parse.GetValue(json), "invalid_flags", problem!, 2)
                : await Ask(parse.GetValue(stateDir)!, name, change, parse.GetValue(json), cancel);
        });
        return command;
    }

    /// <summary>
    /// Runs a daemon until SIGTERM or Ctrl+C. With <paramref name="change"/> (<c>up --foreground</c>) it
    /// logs in with it first, and exits 1 if the coordinator refuses that first login.
    /// </summary>
    private static async Task<int> RunDaemon(AgentDaemonOptions options, Serilog.Core.Logger logger, PrefsChange? change, CancellationToken cancel)
    {
        using var factory = new SerilogLoggerFactory(logger);
        Log.Logger = logger; // the actors' logs (Akka.Logger.Serilog) go where the rest go
        AgentDaemon daemon;
        try
        {
            daemon = await AgentDaemon.StartAsync(options, factory);
        }
        catch (Exception e) when (e is AgentStateException or IOException or UnauthorizedAccessException or SocketException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
        await using (daemon)
        {
            var watcher = new StatusPrinter { Joining = change is not null };
            daemon.Control.Tell(new WatchControl(daemon.System.ActorOf(Props.Create(() => new StatusPrinterActor(watcher)))));
            Console.WriteLine(daemon.ListenPort is { } listening
                ? $"weft-agent: tunnels on {options.TunName}, WireGuard on UDP {listening}; local API on {daemon.SocketPath}"
                : $"weft-agent: control plane only (--no-tunnels); local API on {daemon.SocketPath}");
            if (change is not null && await daemon.ReconfigureAsync(change, connect: true) is LocalApiError refused)
            {
                Console.Error.WriteLine($"error: {refused.Error}");
                return 1;
            }
            var stopped = new TaskCompletionSource();
            using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => { context.Cancel = true; stopped.TrySetResult(); });
            await using var _ = cancel.Register(() => stopped.TrySetResult());
            var interfaceGone = daemon.InterfaceGone;
            var first = await Task.WhenAny(stopped.Task, watcher.Refused.Task, daemon.Stopped, interfaceGone);
            if (first == daemon.Stopped)
            {
                Console.Error.WriteLine("error: a service of the agent failed repeatedly and stopped (see the log); exiting so that the service manager starts the agent again");
                return 1;
            }
            if (first == interfaceGone)
            {
                Console.Error.WriteLine($"error: {interfaceGone.Result}; exiting so that the service manager starts the agent again, which creates it afresh");
                return 1;
            }
            var code = first == watcher.Refused.Task ? 1 : 0;
            if (code == 0) Console.WriteLine("weft-agent: going down");
            return code;
        }
    }

    public static Command Down() => Simple("down", "Take the tunnels down and disconnect from the coordinator; the daemon keeps running (and stays down across restarts) until up");

    public static Command Logout() => Simple("logout", "Log this device out: the coordinator expires it and the agent forgets it; login (or up --auth-key) joins again, without a restart");

    public static Command RotateNodeKey() => Simple("rotate-node-key", "Rotate this device's node key now (it also rotates on its own before the key expires)");

    public static Command Netcheck() => Simple("netcheck", "Probe the relays' STUN servers from the tunnel's socket: UDP, the NAT's mapping (easy or hard), the addresses seen, per-region latency and the home region");

    public static Command Dns()
    {
        var dns = new Command("dns", "MagicDNS on this device");
        dns.Add(Simple("status", "Show where MagicDNS answers, for which suffix, and what the system's resolver was told (the file, nameserver, search domains, upstreams)", "dns"));
        return dns;
    }

    public static Command Status() => Simple("status", "Show this device and its peers: addresses, path, endpoint, last handshake, bytes in and out, online");

    private static Command Simple(string name, string description, string? apiCommand = null)
    {
        var command = new Command(name, description);
        var stateDir = StateDirectoryOption();
        var json = JsonOption();
        command.Add(stateDir);
        command.Add(json);
        command.SetAction((parse, cancel) => Ask(parse.GetValue(stateDir)!, apiCommand ?? name, null, parse.GetValue(json), cancel));
        return command;
    }

    public static Command Ping()
    {
        var ping = new Command("ping", "Ping a peer over the tunnel (ICMP from this device's tailnet address) and show the path the answer took");
        var target = new Argument<string>("peer") { Description = "The peer's name, FQDN or tailnet address" };
        var count = new Option<int>("-c", "--count") { Description = "How many pings", DefaultValueFactory = _ => 3 };
        var timeout = new Option<int>("--timeout-ms") { Description = "How long to wait for each answer", DefaultValueFactory = _ => 2000 };
        var ipv6 = new Option<bool>("-6") { Description = "Use the peer's IPv6 tailnet address when given a name" };
        var stateDir = StateDirectoryOption();
        var json = JsonOption();
        foreach (var option in new Option[] { count, timeout, ipv6, stateDir, json }) ping.Add(option);
        ping.Add(target);
        ping.SetAction((parse, cancel) => Ask(parse.GetValue(stateDir)!, "ping",
            new PingRequest { Target = parse.GetValue(target), Count = parse.GetValue(count), TimeoutMs = parse.GetValue(timeout), Ipv6 = parse.GetValue(ipv6) },
            parse.GetValue(json), cancel));
        return ping;
    }

    /// <summary>An error as the command prints it: JSON on standard output with <c>--json</c>, else a line on standard error.</summary>
    private static int Fail(bool json, string code, string message, int exitCode)
    {
        if (json) Console.WriteLine(JsonSerializer.Serialize(new LocalApiError(code, message), LocalApi.Json));
        else Console.Error.WriteLine($"error: {message}");
        return exitCode;
    }

    /// <summary>
    /// After <c>up</c>: while the device waits for its person to sign in (a tailnet with an identity
    /// provider), shows the login link (again whenever it is replaced) and waits until the device runs,
    /// or is refused. Returns at once when it does not wait for a sign-in.
    /// </summary>
    private static async Task<int> WaitForSignIn(string directory, CancellationToken cancel)
    {
        string? shown = null;
        while (!cancel.IsCancellationRequested)
        {
            JsonDocument document;
            try
            {
                (_, document) = await LocalApi.QueryAsync(directory, "status", null, cancel);
            }
            catch (Exception e) when (e is HttpRequestException or SocketException or IOException or JsonException)
            {
                return Fail(false, "no_daemon", $"the daemon stopped answering while waiting for the sign-in ({(e.InnerException ?? e).Message})", 1);
            }
            using (document)
            {
                var root = document.RootElement;
                var state = root.TryGetProperty("state", out var s) ? s.GetString() : null;
                if (state != LocalApi.StateName(ControlState.WaitingForLogin))
                {
                    if (shown is null) return 0; // it never waited for a sign-in
                    Console.WriteLine(state == LocalApi.StateName(ControlState.Running) ? "Success: signed in; this device runs." : $"{state}: {StatusText.Text(root, "detail")}");
                    return state == LocalApi.StateName(ControlState.Running) ? 0 : 1;
                }
                if (root.TryGetProperty("loginUrl", out var url) && url.GetString() is { } link && link != shown)
                {
                    Console.WriteLine($"\nTo sign in and add this device to the tailnet, visit:\n\n\t{link}\n");
                    shown = link;
                }
            }
            await Task.Delay(TimeSpan.FromMilliseconds(500), cancel).ContinueWith(_ => { });
        }
        return 1;
    }

    /// <summary>Sends one command to the daemon and prints its answer (human text, or the JSON). Exit 1 on any error.</summary>
    private static async Task<int> Ask(string directory, string command, object? body, bool json, CancellationToken cancel)
    {
        var socket = Path.Combine(directory, LocalApi.SocketName);
        HttpStatusCode status;
        JsonDocument document;
        try
        {
            (status, document) = await LocalApi.QueryAsync(directory, command, body, cancel);
        }
        catch (HttpRequestException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.AccessDenied } || e.InnerException is UnauthorizedAccessException)
        {
            return Fail(json, "forbidden", $"permission denied on {socket}: the agent's local API is for root only", 1);
        }
        catch (Exception e) when (e is HttpRequestException or SocketException or IOException or JsonException)
        {
            return Fail(json, "no_daemon", $"no weft-agent daemon answers at {socket} ({(e.InnerException ?? e).Message}): start it (systemctl start weft-agent, or weft-agent daemon), or run weft-agent up --foreground", 1);
        }
        using (document)
        {
            var root = document.RootElement;
            var failed = status != HttpStatusCode.OK || root.TryGetProperty("received", out var received) && received.GetInt32() == 0;
            if (json) Console.WriteLine(JsonSerializer.Serialize(root, LocalApi.Json));
            else if (root.TryGetProperty("error", out var error)) Console.Error.WriteLine($"error: {error.GetString()}");
            else Console.Write(StatusText.Render(root));
            return failed ? 1 : 0;
        }
    }

    /// <summary>Reports state changes on the console; completes <see cref="Refused"/> if the very first login is refused.</summary>
    private sealed class StatusPrinter
    {
        public TaskCompletionSource Refused { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        /// <summary>Started with a login (<c>up --foreground</c>): a refusal before it ever ran ends the process.</summary>
        public bool Joining { get; init; }
        public bool EverJoined { get; set; }
    }

    private sealed class StatusPrinterActor : ReceiveActor
    {
        public StatusPrinterActor(StatusPrinter printer)
        {
            Receive<ControlStateChanged>(changed =>
            {
                Console.WriteLine($"weft-agent: {LocalApi.StateName(changed.State)}: {changed.Detail}{(changed.Code is null ? "" : $" ({changed.Code})")}");
                if (changed.State is ControlState.Running or ControlState.PendingApproval) printer.EverJoined = true;
                if (changed.State == ControlState.NeedsLogin && printer.Joining && !printer.EverJoined && changed.Code != ControlErrorCodes.NotLoggedIn) printer.Refused.TrySetResult();
            });
            Receive<NodeKeyChanged>(_ => { });
            Receive<DiscoKeyChanged>(_ => { });
            Receive<RelayAccessChanged>(_ => { });
            Receive<NetMapForgotten>(_ => { });
            Receive<NetMapChanged>(changed =>
            {
                if (changed.How == NetMapApplied.Replaced)
                    Console.WriteLine($"weft-agent: netmap v{changed.View.Version}: {changed.View.Peers.Count} peer(s)");
            });
        }
    }
}

/// <summary>The human forms of the local API's answers: status, ping, up/down and logout.</summary>
public static class StatusText
{
    public static string Render(JsonElement answer)
    {
        if (answer.TryGetProperty("error", out var error)) return $"error: {error.GetString()}\n";
        if (answer.TryGetProperty("replies", out _)) return RenderPing(answer);
        if (answer.TryGetProperty("listeningOn", out _)) return RenderDns(answer);
        if (answer.TryGetProperty("natKind", out _)) return RenderNetcheck(answer);
        if (answer.TryGetProperty("coordinatorTold", out var told))
            return $"{Text(answer, "detail")}{(told.GetBoolean() ? "" : " (the coordinator was not told)")}\n";
        if (!answer.TryGetProperty("peers", out _)) return $"{Text(answer, "state")}: {Text(answer, "detail")}\n";
        return RenderStatus(answer);
    }

    private static string RenderNetcheck(JsonElement report)
    {
        var text = new System.Text.StringBuilder();
        text.AppendLine("netcheck:");
        text.AppendLine($"  UDP:            {(report.GetProperty("udp").GetBoolean() ? "yes" : "no (blocked, or no relay answered STUN)")}");
        text.AppendLine($"  NAT mapping:    {Text(report, "natKind")}{(Text(report, "natKind") switch { "easy" => " (one mapping for every destination: direct paths work)", "hard" => " (a mapping per destination: direct only with an easy peer, else relayed)", _ => "" })}");
        text.AppendLine($"  STUN addresses: {(report.GetProperty("stunAddresses").GetArrayLength() == 0 ? "-" : List(report.GetProperty("stunAddresses")))}");
        text.AppendLine($"  local:          {(report.GetProperty("localEndpoints").GetArrayLength() == 0 ? "-" : List(report.GetProperty("localEndpoints")))}");
        text.AppendLine($"  home region:    {(report.GetProperty("homeRegion").GetInt32() is var home && home > 0 ? home.ToString() : "-")}");
        var regions = report.GetProperty("regions").EnumerateArray().ToList();
        if (regions.Count == 0) text.AppendLine("  (no relay map yet)");
        foreach (var region in regions)
        {
            var latency = region.GetProperty("latencyMs");
            text.AppendLine(FormattableString.Invariant($"  region {region.GetProperty("regionId").GetInt32(),-4} {Text(region, "code"),-12} {(latency.ValueKind == JsonValueKind.Number ? $"{latency.GetDouble():0.0} ms" : "no answer"),-10} {Text(region, "mappedAddress") ?? ""}"));
        }
        return text.ToString();
    }

    private static string RenderDns(JsonElement dns)
    {
        var text = new System.Text.StringBuilder();
        var system = dns.GetProperty("system");
        text.AppendLine($"MagicDNS:     {(dns.GetProperty("listeningOn").GetArrayLength() == 0 ? "not answering (no tailnet address yet, or down)" : "answering on " + List(dns.GetProperty("listeningOn")))}");
        text.AppendLine($"suffix:       {Text(dns, "suffix") ?? "-"}");
        text.AppendLine($"accept-dns:   {(dns.GetProperty("acceptDns").GetBoolean() ? "yes" : "no")}");
        text.AppendLine($"system:       {Text(system, "mode")} ({Text(system, "file")}){(Text(system, "problem") is { } problem ? ": " + problem : "")}");
        if (Text(system, "nameserver") is { } nameserver)
        {
            text.AppendLine($"  nameserver: {nameserver}");
            text.AppendLine($"  search:     {List(system.GetProperty("searchDomains"))}");
            text.AppendLine($"  upstreams:  {(system.GetProperty("upstreams").GetArrayLength() == 0 ? "none (names outside the tailnet are refused)" : List(system.GetProperty("upstreams")))}");
            text.AppendLine($"  original:   {Text(system, "backup")}");
        }
        text.AppendLine($"forwarded:    {dns.GetProperty("forwarded").GetInt64()} queries");
        return text.ToString();
    }

    private static string RenderPing(JsonElement ping)
    {
        var text = new System.Text.StringBuilder();
        var name = Text(ping, "target");
        var address = Text(ping, "address");
        foreach (var reply in ping.GetProperty("replies").EnumerateArray())
        {
            var sequence = reply.GetProperty("sequence").GetInt32();
            if (reply.TryGetProperty("milliseconds", out var ms) && ms.ValueKind == JsonValueKind.Number)
                text.AppendLine(FormattableString.Invariant($"pong from {name} ({address}) via {Text(reply, "via") ?? "?"} in {ms.GetDouble():0.0} ms (seq {sequence})"));
            else
                text.AppendLine($"timeout waiting for {name} ({address}) (seq {sequence})");
        }
        text.AppendLine($"{ping.GetProperty("sent").GetInt32()} sent, {ping.GetProperty("received").GetInt32()} answered");
        return text.ToString();
    }

    private static string RenderStatus(JsonElement status)
    {
        var text = new System.Text.StringBuilder();
        text.AppendLine($"state:        {status.GetProperty("state").GetString()} ({status.GetProperty("detail").GetString()})");
        text.AppendLine($"coordinator:  {Text(status, "coordinator") ?? "-"}");
        text.AppendLine($"device:       {Text(status, "deviceId") ?? "-"} in {Text(status, "tailnetId") ?? "-"}");
        text.AppendLine($"machine key:  {Text(status, "machineKey")}");
        text.AppendLine($"node key:     {Text(status, "nodeKey")}");
        text.AppendLine($"netmap:       version {status.GetProperty("netMapVersion").GetUInt64()}");
        if (status.TryGetProperty("self", out var self) && self.ValueKind == JsonValueKind.Object)
        {
            text.AppendLine($"self:         {Text(self, "name")} {string.Join(" ", self.GetProperty("addresses").EnumerateArray().Select(a => a.GetString()))} ({Text(self, "status")})");
            if (self.TryGetProperty("advertisedRoutes", out var offered) && offered.ValueKind == JsonValueKind.Array && offered.GetArrayLength() > 0)
                text.AppendLine($"advertises:   {List(offered)} (approved and in force: {(self.GetProperty("routes").GetArrayLength() == 0 && !self.GetProperty("exitNode").GetBoolean() ? "none" : List(self.GetProperty("routes")) + (self.GetProperty("exitNode").GetBoolean() ? " exit-node" : ""))})");
        }
        if (status.TryGetProperty("routing", out var routing) && routing.ValueKind == JsonValueKind.Object)
        {
            if (Text(routing, "exitNode") is { } exit)
                text.AppendLine($"exit node:    {exit}{(Text(routing, "exitNodeProblem") is { } problem ? $" (not in use: {problem})" : "")}");
            if (routing.GetProperty("routes").GetArrayLength() > 0) text.AppendLine($"routes:       {List(routing.GetProperty("routes"))}");
        }
        var peers = status.GetProperty("peers").EnumerateArray().ToList();
        text.AppendLine();
        text.AppendLine($"{"PEER",-20} {"ADDRESSES",-42} {"ONLINE",-6} {"PATH",-7} {"ENDPOINT",-24} {"MTU",-5} {"HANDSHAKE",-10} {"RX",9} {"TX",9}  ROUTES");
        foreach (var peer in peers)
        {
            var addresses = string.Join(" ", peer.GetProperty("addresses").EnumerateArray().Select(a => a.GetString()));
            var endpoint = string.Join(" ", peer.GetProperty("endpoints").EnumerateArray().Select(a => a.GetString())).Split(' ')[0];
            string handshake = "-", rx = "-", tx = "-", path = "-", mtu = "-";
            if (peer.TryGetProperty("tunnel", out var tunnel) && tunnel.ValueKind == JsonValueKind.Object)
            {
                path = Text(tunnel, "path") ?? "-";
                endpoint = Text(tunnel, "endpoint") ?? endpoint;
                if (tunnel.TryGetProperty("mtu", out var pathMtu) && pathMtu.ValueKind == JsonValueKind.Number) mtu = pathMtu.GetInt32().ToString(CultureInfo.InvariantCulture);
                if (tunnel.TryGetProperty("lastHandshake", out var at) && at.ValueKind == JsonValueKind.String)
                    handshake = Ago(DateTimeOffset.UtcNow - at.GetDateTimeOffset());
                rx = Bytes(tunnel.GetProperty("rxBytes").GetInt64());
                tx = Bytes(tunnel.GetProperty("txBytes").GetInt64());
            }
            var peerRoutes = List(peer.GetProperty("routes")) + (peer.GetProperty("exitNode").GetBoolean() ? " exit-node" : "");
            text.AppendLine($"{Text(peer, "name"),-20} {addresses,-42} {(peer.GetProperty("online").GetBoolean() ? "yes" : "no"),-6} {path,-7} {(endpoint.Length == 0 ? "-" : endpoint),-24} {mtu,-5} {handshake,-10} {rx,9} {tx,9}  {(peerRoutes.Trim().Length == 0 ? "-" : peerRoutes.Trim())}");
        }
        if (peers.Count == 0) text.AppendLine("(no peers)");
        return text.ToString();
    }

    private static string List(JsonElement array) => string.Join(" ", array.EnumerateArray().Select(a => a.GetString()));

    private static string Ago(TimeSpan age) =>
        age.TotalSeconds < 1 ? "now" : age.TotalMinutes < 1 ? $"{(int)age.TotalSeconds}s ago" : age.TotalHours < 1 ? $"{(int)age.TotalMinutes}m ago" : $"{(int)age.TotalHours}h ago";

    private static string Bytes(long bytes) =>
        bytes < 1024 ? $"{bytes} B" : bytes < 1 << 20 ? FormattableString.Invariant($"{bytes / 1024.0:0.0} KiB") : FormattableString.Invariant($"{bytes / 1048576.0:0.0} MiB");

    internal static string? Text(JsonElement element, string property) =>
        element.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
