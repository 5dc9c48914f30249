using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;

namespace Weft.Lab;

/// <summary>
/// A Weft coordinator process on the host (SQLite in the lab folder), its admin API on loopback
/// and its control port on the lab's underlay, so that agents in namespaces can dial it.
/// </summary>
public sealed class WeftCoordinator : IAsyncDisposable
{
    private readonly Lab _lab;
    private readonly string[] _arguments;
    private readonly string _operatorKey;
    private readonly IReadOnlyDictionary<string, string> _environment;

    private WeftCoordinator(Lab lab, string[] arguments, string operatorKey, Uri api, Uri control, IReadOnlyDictionary<string, string> environment)
    {
        _environment = environment;
        _lab = lab;
        _arguments = arguments;
        _operatorKey = operatorKey;
        Api = api;
        Control = control;
        Http = new HttpClient { BaseAddress = api, Timeout = TimeSpan.FromSeconds(30) };
        Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", operatorKey);
    }

    public Uri Api { get; }

    public Uri Control { get; }

    public HttpClient Http { get; }

    public LabProcess? Process { get; private set; }

    /// <param name="environment">Extra settings (<c>Weft__…</c>), e.g. a relay map of separate relays.</param>
    /// <param name="apiAddress">Where the API listens: loopback, or a lab address when lab machines must reach it (separate relays asking about access).</param>
    public static WeftCoordinator Start(Lab lab, string controlAddress, IReadOnlyDictionary<string, string>? environment = null, string apiAddress = "127.0.0.1")
    {
        var apiPort = FreeTcpPort();
        var api = new Uri($"http://{apiAddress}:{apiPort}/");
        var control = new Uri($"http://{controlAddress}:7650/");
        var operatorKey = "weft_" + Base32(10) + "_" + Base32(32);
        string[] arguments =
        [
            "dotnet", Binaries.Coordinator, "--data-dir", Path.Combine(lab.Directory, "coordinator"), "--api-listen", api.ToString(),
            "--control-listen", control.ToString(), "--akka-port", "0",
        ];
        var coordinator = new WeftCoordinator(lab, arguments, operatorKey, api, control, environment ?? new Dictionary<string, string>());
        coordinator.Run();
        return coordinator;
    }

    /// <summary>Starts (or restarts, on the same data) the coordinator process and waits until it serves.</summary>
    public void Run()
    {
        var info = new ProcessStartInfo(_arguments[0]);
        foreach (var argument in _arguments.Skip(1)) info.ArgumentList.Add(argument);
        info.Environment["Weft__BootstrapOperatorKey"] = _operatorKey;
        // The embedded relay and STUN server on free ports (the relay map carries the ones bound).
        info.Environment["Weft__Relay__Listen"] = "0.0.0.0:0";
        info.Environment["Weft__Relay__Stun"] = "0.0.0.0:0";
        foreach (var (key, value) in _environment) info.Environment[key] = value;
        Process = _lab.Track(new LabProcess("weft coordinator", info));
        Process.WaitForOutput("Weft coordinator is up", TimeSpan.FromSeconds(90));
    }

    public void Stop() => Process?.Stop(TimeSpan.FromSeconds(15));

    /// <summary>The key relays must trust (<c>weft-relay --ticket-issuer</c>), as the start-up banner prints it.</summary>
    public string TicketIssuer =>
        System.Text.RegularExpressions.Regex.Match(Process?.Output ?? "", @"ticket issuer (ed25519:[0-9a-f]{64})") is { Success: true } match
            ? match.Groups[1].Value : throw new LabException("the coordinator did not print its ticket issuer");

    /// <summary>Creates a tailnet and returns its id.</summary>
    public async Task<string> CreateTailnet(string name)
    {
        var created = await Post("/api/v1/tailnets", new { name });
        return created.GetProperty("id").GetString()!;
    }

    public async Task<string> CreateAuthKey(string tailnet, string? user = null, string[]? tags = null)
    {
        if (user is not null) await Post($"/api/v1/tailnets/{tailnet}/users", new { name = user }, allowConflict: true);
        var key = await Post($"/api/v1/tailnets/{tailnet}/auth-keys", new { reusable = true, user, tags });
        return key.GetProperty("key").GetString()!;
    }

    public async Task<JsonElement> Post(string path, object body, bool allowConflict = false)
    {
        using var response = await Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        if (allowConflict && response.StatusCode == System.Net.HttpStatusCode.Conflict) return default;
        if (!response.IsSuccessStatusCode) throw new LabException($"POST {path} answered {(int)response.StatusCode}: {text}");
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    public async Task Send(HttpMethod method, string path, string? hujson = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (hujson is not null) request.Content = new StringContent(hujson, System.Text.Encoding.UTF8, "application/hujson");
        using var response = await Http.SendAsync(request);
        if (!response.IsSuccessStatusCode) throw new LabException($"{method} {path} answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }

    private static int FreeTcpPort()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static string Base32(int length)
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyz234567";
        return string.Concat(RandomNumberGenerator.GetBytes(length).Select(b => alphabet[b & 31]));
    }

    public ValueTask DisposeAsync()
    {
        Http.Dispose();
        Stop();
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// A <c>weft-agent</c> in a lab machine, with its state in the lab folder: either <c>up --foreground</c>
/// (daemon and login in one process, as in a container) or the service way, a <c>weft-agent daemon</c>
/// process that the <c>up</c> CLI then logs in.
/// </summary>
public sealed class WeftAgent
{
    private readonly string[] _runArguments;

    private WeftAgent(Namespace machine, string name, string stateDirectory, string[] runArguments)
    {
        Machine = machine;
        Name = name;
        StateDirectory = stateDirectory;
        _runArguments = runArguments;
    }

    public Namespace Machine { get; }

    public string Name { get; }

    public string StateDirectory { get; }

    public LabProcess? Process { get; private set; }

    /// <summary><c>weft-agent up --foreground</c>: joins with <paramref name="authKey"/>; <paramref name="extra"/> may hold daemon and login flags alike.</summary>
    public static WeftAgent Start(Namespace machine, string name, Uri coordinator, string authKey, params string[] extra)
    {
        var state = Path.Combine(machine.Lab.Directory, "agent-" + name);
        var agent = new WeftAgent(machine, name, state,
        [
            "dotnet", Binaries.Agent, "up", "--foreground", "--login-server", coordinator.ToString(), "--auth-key", authKey, "--hostname", name,
            "--state-dir", state, .. extra,
        ]);
        agent.Run();
        return agent;
    }

    /// <summary>The service way: <c>weft-agent daemon</c> (with <paramref name="daemonFlags"/>), then <c>weft-agent up</c> against it.</summary>
    public static WeftAgent StartService(Namespace machine, string name, Uri coordinator, string authKey, params string[] daemonFlags)
    {
        var state = Path.Combine(machine.Lab.Directory, "agent-" + name);
        var agent = new WeftAgent(machine, name, state, ["dotnet", Binaries.Agent, "daemon", "--state-dir", state, .. daemonFlags]);
        agent.Run();
        var (code, output) = agent.Cli("up", "--login-server", coordinator.ToString(), "--auth-key", authKey, "--hostname", name);
        if (code != 0) throw new LabException($"weft-agent up on {name}'s daemon failed ({code}): {output}");
        return agent;
    }

    /// <summary><c>weft-agent daemon</c> alone: it waits for a <c>weft-agent up</c> (which a test runs itself, e.g. to sign in interactively).</summary>
    public static WeftAgent StartDaemon(Namespace machine, string name, params string[] daemonFlags)
    {
        var state = Path.Combine(machine.Lab.Directory, "agent-" + name);
        var agent = new WeftAgent(machine, name, state, ["dotnet", Binaries.Agent, "daemon", "--state-dir", state, .. daemonFlags]);
        agent.Run();
        return agent;
    }

    /// <summary>
    /// Starts <c>weft-agent up</c> with <paramref name="arguments"/> as a process of its own (it may wait,
    /// e.g. for someone to sign in); the test reads its output and waits for it to end.
    /// </summary>
    public LabProcess StartCli(string description, params string[] arguments) =>
        Machine.Start(description, ["dotnet", Binaries.Agent, .. arguments, "--state-dir", StateDirectory]);

    /// <summary>Starts (or restarts) the agent process and waits until its tunnels exist.</summary>
    public void Run()
    {
        Process = Machine.Start("weft-agent " + Name, _runArguments);
        Process.WaitForOutput("tunnels on", TimeSpan.FromSeconds(60));
    }

    public void Stop() => Process?.Stop(TimeSpan.FromSeconds(10));

    /// <summary>Runs a <c>weft-agent</c> CLI command against this agent; returns its exit code and output.</summary>
    public (int Code, string Output) Cli(params string[] arguments) => CliAs(null, arguments);

    /// <summary>The same, as another user (e.g. <c>nobody</c>), through setpriv.</summary>
    public (int Code, string Output) CliAs(string? user, params string[] arguments)
    {
        var command = new List<string>();
        if (user is not null) command.AddRange(["setpriv", "--reuid", user, "--regid", "nogroup", "--clear-groups"]);
        command.AddRange(["dotnet", Binaries.Agent, .. arguments, "--state-dir", StateDirectory]);
        // Run inside the agent's namespace, as a person on that machine would.
        command.InsertRange(0, ["ip", "netns", "exec", Machine.Name]);
        var info = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in command.Skip(1)) info.ArgumentList.Add(argument);
        if (user is not null)
        {
            info.Environment["DOTNET_CLI_HOME"] = Path.GetTempPath();
            info.Environment["HOME"] = Path.GetTempPath();
        }
        using var process = System.Diagnostics.Process.Start(info) ?? throw new LabException("could not run weft-agent");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(60_000))
        {
            process.Kill(entireProcessTree: true);
            throw new LabException($"weft-agent {string.Join(' ', arguments)} did not finish in 60 s");
        }
        return (process.ExitCode, output.Result + error.Result);
    }

    /// <summary>The agent's status as JSON (<c>weft-agent status --json</c>).</summary>
    public JsonElement Status()
    {
        var (code, output) = Cli("status", "--json");
        if (code != 0) throw new LabException($"weft-agent status failed ({code}): {output}");
        return JsonDocument.Parse(output).RootElement.Clone();
    }

    /// <summary>This device's tailnet addresses (IPv4 first), once it has them.</summary>
    public (string V4, string V6) Addresses()
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var status = Status();
            if (status.TryGetProperty("self", out var self) && self.ValueKind == JsonValueKind.Object)
            {
                var addresses = self.GetProperty("addresses").EnumerateArray().Select(a => a.GetString()!.Split('/')[0]).ToList();
                return (addresses.First(a => !a.Contains(':')), addresses.First(a => a.Contains(':')));
            }
            if (DateTime.UtcNow > deadline) throw new LabException($"agent {Name} has no addresses: {status}");
            Thread.Sleep(200);
        }
    }

    /// <summary>Waits until the agent's netmap holds exactly these peers (by name).</summary>
    public void WaitForPeers(params string[] names)
    {
        var expected = names.Order().ToList();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        JsonElement status;
        do
        {
            status = Status();
            var peers = status.GetProperty("peers").EnumerateArray().Select(p => p.GetProperty("name").GetString()!).Order().ToList();
            if (peers.SequenceEqual(expected)) return;
            Thread.Sleep(200);
        } while (DateTime.UtcNow < deadline);
        throw new LabException($"agent {Name} never saw peers [{string.Join(", ", expected)}]: {status}");
    }
}

/// <summary>Where the built executables are: each runs from its own project's output, as on a real machine.</summary>
public static class Binaries
{
    public static string Agent => Find("NodeAgent", "weft-agent.dll");

    public static string Coordinator => Find("Cluster", "weft.dll");

    public static string Relay => Find("Relay", "weft-relay.dll");

    private static string Find(string project, string file)
    {
        var output = new DirectoryInfo(AppContext.BaseDirectory); // tests/<project>/bin/<Configuration>/<tfm>/
        var framework = output.Name;
        var configuration = output.Parent!.Name;
        var root = output;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Cluster.sln"))) root = root.Parent;
        var path = Path.Combine(root?.FullName ?? throw new LabException("Cluster.sln not found above the test output"), "src", project, "bin", configuration, framework, file);
        if (!File.Exists(path)) throw new LabException($"{path} is missing: build the solution first");
        return path;
    }
}
