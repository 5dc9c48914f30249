using System.Collections.Immutable;
using System.Globalization;
using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.Json;
using Akka.Actor;
using Microsoft.Extensions.Logging;
using Serilog;
using Serilog.Extensions.Logging;
using Weft.Contracts.Control;
using Weft.NodeAgent.Agent;
using Weft.NodeAgent.Control;

namespace Weft.NodeAgent.Cli;

/// <summary><c>weft-agent up</c> (the agent itself), and <c>down</c>, <c>status</c>, <c>ping</c> and <c>logout</c>, which talk to it over its local API.</summary>
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
        Description = "Where the agent keeps its keys (mode 0600) and its status socket",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("WEFT_AGENT_STATE_DIR") ?? DefaultStateDirectory(),
    };

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

    public static Command Up()
    {
        var up = new Command("up", "Join a tailnet and run the agent (tunnels, MagicDNS, local API) until interrupted; on an agent that is down, bring it up again");
        var loginServer = new Option<string?>("--login-server") { Description = "Coordinator control URL(s), comma-separated, e.g. http://coord1:7650,http://coord2:7650" };
        var authKey = new Option<string?>("--auth-key") { Description = "Auth key (weft-auth....); visible to local users in ps: prefer --auth-key-file or WEFT_AUTH_KEY. Without one the device waits for an admin's approval (give --tailnet)" };
        var authKeyFile = new Option<string?>("--auth-key-file") { Description = "File holding the auth key (read once at start)" };
        var tailnet = new Option<string?>("--tailnet") { Description = "Tailnet to wait in for approval when no auth key is given" };
        var hostname = new Option<string>("--hostname") { Description = "Name to register with", DefaultValueFactory = _ => Environment.MachineName };
        var endpoints = new Option<string[]>("--endpoint") { Description = "Static endpoint ip:port to advertise (repeatable), before the discovered ones", AllowMultipleArgumentsPerToken = true };
        var forceReauth = new Option<bool>("--force-reauth") { Description = "Re-authorise this device with --auth-key (after its node key expired)" };
        var noTunnels = new Option<bool>("--no-tunnels") { Description = "Control plane only: no TUN, no WireGuard (needs no root); shows what it would connect to" };
        var tun = new Option<string>("--tun") { Description = "TUN interface name", DefaultValueFactory = _ => "weft0" };
        var port = new Option<int>("--port") { Description = "WireGuard UDP port (0: any free port)", DefaultValueFactory = _ => 41641 };
        var dnsPort = new Option<int>("--dns-port") { Description = "MagicDNS port on the tailnet addresses", DefaultValueFactory = _ => 53 };
        var advertiseRoutes = new Option<string?>("--advertise-routes") { Description = "Subnet routes to offer the tailnet, comma-separated CIDRs (e.g. 198.51.100.0/24); an admin or the policy's autoApprovers approves them" };
        var advertiseExitNode = new Option<bool>("--advertise-exit-node") { Description = "Offer this device as an exit node (0.0.0.0/0 and ::/0), once approved" };
        var snat = new Option<bool>("--snat-subnet-routes") { Description = "Masquerade traffic this router forwards onto its subnets and the internet (false: the LAN needs a route back to 100.64.0.0/10)", DefaultValueFactory = _ => true };
        var acceptRoutes = new Option<bool>("--accept-routes") { Description = "Route traffic for peers' approved subnets through them (off by default, as Tailscale on Linux)" };
        var exitNode = new Option<string?>("--exit-node") { Description = "Send internet traffic through this exit node (a peer's name, FQDN or tailnet address)" };
        var stateDir = StateDirectoryOption();
        foreach (var option in new Option[] { loginServer, authKey, authKeyFile, tailnet, hostname, endpoints, forceReauth, noTunnels, tun, port, dnsPort,
                     advertiseRoutes, advertiseExitNode, snat, acceptRoutes, exitNode, stateDir }) up.Add(option);

        up.SetAction(async (parse, cancel) =>
        {
            var directory = parse.GetValue(stateDir)!;
            if (parse.GetValue(loginServer) is not { } servers)
            {
                // No coordinator given: this is "bring the running agent up again".
                return await Ask(directory, new { command = "up" }, json: false, cancel);
            }
            var urls = new List<Uri>();
            foreach (var text in servers.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!Uri.TryCreate(text, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
                {
                    Console.Error.WriteLine($"error: --login-server '{text}' is not an http(s) URL");
                    return 2;
                }
                urls.Add(url);
            }
            if (!TryReadAuthKey(parse.GetValue(authKey), parse.GetValue(authKeyFile), out var key, out var keyProblem))
            {
                Console.Error.WriteLine($"error: {keyProblem}");
                return 2;
            }
            var advertised = parse.GetValue(endpoints) ?? [];
            foreach (var endpoint in advertised)
            {
                if (!IPEndPoint.TryParse(endpoint, out var parsed) || parsed.Port == 0)
                {
                    Console.Error.WriteLine($"error: --endpoint '{endpoint}' is not ip:port");
                    return 2;
                }
            }
            var routes = new List<string>();
            foreach (var text in (parse.GetValue(advertiseRoutes) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!IpLiteral.TryParsePrefix(text, out var prefix) || prefix.PrefixLength == 0)
                {
                    Console.Error.WriteLine($"error: --advertise-routes '{text}' is not a subnet in CIDR form that names its network (e.g. 198.51.100.0/24; for 0.0.0.0/0 use --advertise-exit-node)");
                    return 2;
                }
                routes.Add(prefix.ToString());
            }
            if (parse.GetValue(advertiseExitNode)) routes.AddRange(["0.0.0.0/0", "::/0"]);
            var tunName = parse.GetValue(tun)!;
            if (tunName.Length is 0 or > 15 || tunName.Any(c => c is '/' or ' ' or ':'))
            {
                Console.Error.WriteLine($"error: --tun '{tunName}' is not an interface name (1-15 characters, no '/', ':' or spaces)");
                return 2;
            }
            if (parse.GetValue(port) is < 0 or > 65535 || parse.GetValue(dnsPort) is < 1 or > 65535)
            {
                Console.Error.WriteLine("error: --port must be 0 to 65535 and --dns-port 1 to 65535");
                return 2;
            }
            if (File.Exists(Path.Combine(directory, LocalApi.SocketName)) && await AnswersAsync(directory))
            {
                Console.Error.WriteLine($"error: an agent already runs with state in {directory}; `weft-agent up` (no options) brings it up, `weft-agent down` takes it down");
                return 1;
            }

            using var logger = new LoggerConfiguration().WriteTo.Console(outputTemplate: "{Timestamp:HH:mm:ss.fff} {Level:u3} {Message:lj}{NewLine}{Exception}").CreateLogger();
            using var factory = new SerilogLoggerFactory(logger);
            AgentDaemon daemon;
            try
            {
                daemon = AgentDaemon.Start(new AgentDaemonOptions
                {
                    Coordinators = urls,
                    StateDirectory = directory,
                    Hostname = parse.GetValue(hostname)!,
                    AuthKey = key,
                    Tailnet = parse.GetValue(tailnet),
                    ForceReauth = parse.GetValue(forceReauth),
                    StaticEndpoints = [.. advertised],
                    Tunnels = !parse.GetValue(noTunnels),
                    TunName = tunName,
                    Port = parse.GetValue(port),
                    DnsPort = parse.GetValue(dnsPort),
                    AdvertisedRoutes = [.. routes],
                    SnatSubnetRoutes = parse.GetValue(snat),
                    AcceptRoutes = parse.GetValue(acceptRoutes),
                    ExitNode = parse.GetValue(exitNode),
                }, factory.CreateLogger("weft-agent"));
            }
            catch (Exception e) when (e is AgentStateException or IOException or UnauthorizedAccessException or SocketException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }

            await using (daemon)
            {
                var watcher = new StatusPrinter();
                daemon.Control.Tell(new WatchControl(daemon.System.ActorOf(Props.Create(() => new StatusPrinterActor(watcher)))));
                Console.WriteLine(daemon.ListenPort is { } listening
                    ? $"weft-agent: tunnels on {tunName}, WireGuard on UDP {listening}"
                    : "weft-agent: control plane only (--no-tunnels)");
                var stopped = new TaskCompletionSource();
                using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => { context.Cancel = true; stopped.TrySetResult(); });
                await using var _ = cancel.Register(() => stopped.TrySetResult());
                var first = await Task.WhenAny(stopped.Task, watcher.Refused.Task);
                var code = first == watcher.Refused.Task ? 1 : 0;
                if (code == 0) Console.WriteLine("weft-agent: going down");
                return code;
            }
        });
        return up;
    }

    public static Command Down() => Simple("down", "Take the running agent's tunnels down and disconnect it from the coordinator (it keeps running; `up` resumes)", new { command = "down" });

    public static Command Logout() => Simple("logout", "Log this device out: the coordinator expires it and the agent forgets it (joining again needs an auth key)", new { command = "logout" });

    public static Command RotateNodeKey() => Simple("rotate-node-key", "Rotate this device's node key now (it also rotates on its own before the key expires)", new { command = "rotate-node-key" });

    private static Command Simple(string name, string description, object request)
    {
        var command = new Command(name, description);
        var stateDir = StateDirectoryOption();
        var json = new Option<bool>("--json") { Description = "Print the agent's JSON" };
        command.Add(stateDir);
        command.Add(json);
        command.SetAction((parse, cancel) => Ask(parse.GetValue(stateDir)!, request, parse.GetValue(json), cancel));
        return command;
    }

    public static Command Netcheck() => Simple("netcheck", "Probe the relays' STUN servers from the tunnel's socket: UDP, the NAT's mapping (easy or hard), the addresses seen, per-region latency and the home region", new { command = "netcheck" });

    public static Command Status() => Simple("status", "Show this device and its peers: addresses, endpoint, last handshake, bytes in and out, online", new { command = "status" });

    public static Command Ping()
    {
        var ping = new Command("ping", "Ping a peer over the tunnel (ICMP from this device's tailnet address) and show the path the answer took");
        var target = new Argument<string>("peer") { Description = "The peer's name, FQDN or tailnet address" };
        var count = new Option<int>("-c", "--count") { Description = "How many pings", DefaultValueFactory = _ => 3 };
        var timeout = new Option<int>("--timeout-ms") { Description = "How long to wait for each answer", DefaultValueFactory = _ => 2000 };
        var ipv6 = new Option<bool>("-6") { Description = "Use the peer's IPv6 tailnet address when given a name" };
        var stateDir = StateDirectoryOption();
        var json = new Option<bool>("--json") { Description = "Print the agent's JSON" };
        foreach (var option in new Option[] { count, timeout, ipv6, stateDir, json }) ping.Add(option);
        ping.Add(target);
        ping.SetAction((parse, cancel) => Ask(parse.GetValue(stateDir)!,
            new { command = "ping", target = parse.GetValue(target), count = parse.GetValue(count), timeoutMs = parse.GetValue(timeout), ipv6 = parse.GetValue(ipv6) },
            parse.GetValue(json), cancel));
        return ping;
    }

    /// <summary>Sends one request to the running agent and prints its answer (human text, or the JSON). Exit 1 on any error.</summary>
    private static async Task<int> Ask(string directory, object request, bool json, CancellationToken cancel)
    {
        var socket = Path.Combine(directory, LocalApi.SocketName);
        JsonDocument document;
        try
        {
            document = await LocalApi.QueryAsync(directory, request, cancel);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AccessDenied || File.Exists(socket) && e.SocketErrorCode == SocketError.AddressNotAvailable)
        {
            Console.Error.WriteLine($"error: permission denied on {socket}: the agent's local API is for root only");
            return 1;
        }
        catch (UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"error: permission denied on {socket}: the agent's local API is for root only");
            return 1;
        }
        catch (Exception e) when (e is SocketException or IOException or JsonException)
        {
            Console.Error.WriteLine($"error: no running agent answers at {socket}: {e.Message}");
            return 1;
        }
        using (document)
        {
            var root = document.RootElement;
            var failed = root.TryGetProperty("error", out _) || root.TryGetProperty("received", out var received) && received.GetInt32() == 0;
            if (json) Console.WriteLine(JsonSerializer.Serialize(root, LocalApi.Json));
            else if (root.TryGetProperty("error", out var error)) Console.Error.WriteLine($"error: {error.GetString()}");
            else Console.Write(StatusText.Render(root));
            return failed ? 1 : 0;
        }
    }

    private static async Task<bool> AnswersAsync(string directory)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        try
        {
            using var _ = await LocalApi.QueryAsync(directory, new { command = "status" }, timeout.Token);
            return true;
        }
        catch (Exception e) when (e is SocketException or IOException or JsonException or OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Reports state changes on the console; completes <see cref="Refused"/> if the very first registration is refused.</summary>
    private sealed class StatusPrinter
    {
        public TaskCompletionSource Refused { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public bool EverJoined { get; set; }
    }

    private sealed class StatusPrinterActor : ReceiveActor
    {
        public StatusPrinterActor(StatusPrinter printer)
        {
            Receive<ControlStateChanged>(changed =>
            {
                Console.WriteLine($"weft-agent: {JsonNamingPolicy.KebabCaseLower.ConvertName(changed.State.ToString())}: {changed.Detail}{(changed.Code is null ? "" : $" ({changed.Code})")}");
                if (changed.State is ControlState.Running or ControlState.PendingApproval) printer.EverJoined = true;
                if (changed.State == ControlState.NeedsLogin && !printer.EverJoined) printer.Refused.TrySetResult();
            });
            Receive<NodeKeyChanged>(_ => { });
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

    private static string? Text(JsonElement element, string property) =>
        element.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
