using System.Collections.Immutable;
using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.Json;
using Akka.Actor;
using Akka.Configuration;
using Weft.NodeAgent.Control;

namespace Weft.NodeAgent.Cli;

/// <summary><c>weft-agent up</c> (join a tailnet and stay connected) and <c>weft-agent status</c>.</summary>
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

    public static Command Up()
    {
        var up = new Command("up", "Join a tailnet through a Weft coordinator and stay connected until interrupted");
        var loginServer = new Option<string>("--login-server") { Description = "Coordinator control URL(s), comma-separated, e.g. http://coord1:7650,http://coord2:7650", Required = true };
        var authKey = new Option<string?>("--auth-key") { Description = "Auth key (weft-auth....); without one the device waits for an admin's approval (give --tailnet)" };
        var tailnet = new Option<string?>("--tailnet") { Description = "Tailnet to wait in for approval when no auth key is given" };
        var hostname = new Option<string>("--hostname") { Description = "Name to register with", DefaultValueFactory = _ => Environment.MachineName };
        var endpoints = new Option<string[]>("--endpoint") { Description = "Static endpoint ip:port to advertise (repeatable); the data plane reports discovered ones", AllowMultipleArgumentsPerToken = true };
        var forceReauth = new Option<bool>("--force-reauth") { Description = "Re-authorise this device with --auth-key (after its node key expired)" };
        var stateDir = StateDirectoryOption();
        foreach (var option in new Option[] { loginServer, authKey, tailnet, hostname, endpoints, forceReauth, stateDir }) up.Add(option);

        up.SetAction(async (parse, cancel) =>
        {
            var urls = new List<Uri>();
            foreach (var text in parse.GetValue(loginServer)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!Uri.TryCreate(text, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
                {
                    Console.Error.WriteLine($"error: --login-server '{text}' is not an http(s) URL");
                    return 2;
                }
                urls.Add(url);
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
            if (parse.GetValue(authKey) is null && parse.GetValue(tailnet) is null)
            {
                Console.Error.WriteLine("error: give --auth-key, or --tailnet to wait for an admin's approval");
                return 2;
            }

            var directory = parse.GetValue(stateDir)!;
            IAgentStateStore store;
            try
            {
                store = new FileAgentStateStore(directory);
                store.Load();
            }
            catch (Exception e) when (e is AgentStateException or IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }

            using var system = ActorSystem.Create("weft-agent", ConfigurationFactory.ParseString("akka.loglevel = INFO\nakka.stdout-loglevel = WARNING"));
            var watcher = new StatusPrinter();
            var client = system.ActorOf(ControlClient.PropsFor(new ControlClientOptions
            {
                Coordinators = urls,
                StateStore = store,
                Hostname = parse.GetValue(hostname)!,
                AuthKey = parse.GetValue(authKey),
                Tailnet = parse.GetValue(tailnet),
                ForceReauth = parse.GetValue(forceReauth),
                Endpoints = [.. advertised],
            }), "control");
            using var api = new LocalStatusApi(directory, client);
            client.Tell(new WatchControl(system.ActorOf(Props.Create(() => new StatusPrinterActor(watcher)))));

            var stopped = new TaskCompletionSource();
            using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => { context.Cancel = true; stopped.TrySetResult(); });
            await using var _ = cancel.Register(() => stopped.TrySetResult());
            var first = await Task.WhenAny(stopped.Task, watcher.Refused.Task);
            var code = first == watcher.Refused.Task ? 1 : 0;
            if (code == 0) Console.WriteLine("weft-agent: going down");
            await system.Terminate();
            return code;
        });
        return up;
    }

    public static Command Status()
    {
        var status = new Command("status", "Show this device, its peers and the netmap version, from the running agent");
        var stateDir = StateDirectoryOption();
        var json = new Option<bool>("--json") { Description = "Print the agent's JSON" };
        status.Add(stateDir);
        status.Add(json);
        status.SetAction(async (parse, cancel) =>
        {
            JsonDocument document;
            try
            {
                document = await LocalStatusApi.QueryAsync(parse.GetValue(stateDir)!, "status", cancel);
            }
            catch (Exception e) when (e is SocketException or IOException or JsonException)
            {
                Console.Error.WriteLine($"error: no running agent answers at {Path.Combine(parse.GetValue(stateDir)!, LocalStatusApi.SocketName)}: {e.Message}");
                return 1;
            }
            using (document)
            {
                if (parse.GetValue(json))
                {
                    Console.WriteLine(JsonSerializer.Serialize(document.RootElement, LocalStatusApi.Json));
                    return 0;
                }
                Console.Write(StatusText.Render(document.RootElement));
            }
            return 0;
        });
        return status;
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
            Receive<NetMapChanged>(changed =>
            {
                if (changed.How == NetMapApplied.Replaced)
                    Console.WriteLine($"weft-agent: netmap v{changed.View.Version}: {changed.View.Peers.Count} peer(s)");
            });
        }
    }
}

/// <summary>The human form of <c>weft-agent status</c>.</summary>
public static class StatusText
{
    public static string Render(JsonElement status)
    {
        if (status.TryGetProperty("error", out var error)) return $"error: {error.GetString()}\n";
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
        }
        var peers = status.GetProperty("peers").EnumerateArray().ToList();
        text.AppendLine();
        text.AppendLine($"{"PEER",-24} {"ADDRESSES",-44} {"ONLINE",-7} ENDPOINTS");
        foreach (var peer in peers)
        {
            var addresses = string.Join(" ", peer.GetProperty("addresses").EnumerateArray().Select(a => a.GetString()));
            var endpoints = string.Join(" ", peer.GetProperty("endpoints").EnumerateArray().Select(a => a.GetString()));
            text.AppendLine($"{Text(peer, "name"),-24} {addresses,-44} {(peer.GetProperty("online").GetBoolean() ? "yes" : "no"),-7} {(endpoints.Length == 0 ? "-" : endpoints)}");
        }
        if (peers.Count == 0) text.AppendLine("(no peers)");
        return text.ToString();
    }

    private static string? Text(JsonElement element, string property) =>
        element.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
