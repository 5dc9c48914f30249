using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Weft.Cluster.Tests.ControlPlane;
using Weft.Cluster.Tests.Support;
using Weft.ClusterLab;

namespace Weft.Cluster.Tests.Cli;

/// <summary>The two executables as an operator runs them: <c>weft</c> admin subcommands and <c>weft-agent up|status</c>.</summary>
public sealed class CommandLineTests(SharedCoordinator coordinator) : IClassFixture<SharedCoordinator>, IDisposable
{
    private readonly string _stateDirectory = Path.Combine(Path.GetTempPath(), "weft-cli-agent-" + Guid.NewGuid().ToString("N"));
    private readonly List<Process> _running = [];

    private Task<(int Code, string Output)> Run(string program, params string[] args) => Run(program, new Dictionary<string, string>(), args);

    private async Task<(int Code, string Output)> Run(string program, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        using var process = Start(program, environment, args);
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output + await error);
    }

    /// <summary>
    /// weft.dll runs from this test's output; weft-agent.dll from its own project's output, because
    /// its dependencies there differ from an ASP.NET test folder's (as they will on a device).
    /// </summary>
    private static string PathOf(string program)
    {
        if (program != "weft-agent.dll") return Path.Combine(AppContext.BaseDirectory, program);
        var output = new DirectoryInfo(AppContext.BaseDirectory); // tests/Cluster.Tests/bin/<Configuration>/<tfm>/
        var framework = output.Name;
        var configuration = output.Parent!.Name;
        var root = output;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Cluster.sln"))) root = root.Parent;
        return Path.Combine(root?.FullName ?? throw new InvalidOperationException("Cluster.sln not found above the test output"),
            "src", "NodeAgent", "bin", configuration, framework, program);
    }

    private Process Start(string program, params string[] args) => Start(program, new Dictionary<string, string>(), args);

    private Process Start(string program, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(PathOf(program));
        foreach (var arg in args) info.ArgumentList.Add(arg);
        info.Environment["WEFT_SERVER"] = coordinator.Node.Api.ToString();
        info.Environment["WEFT_API_KEY"] = TestCoordinator.OperatorKey;
        foreach (var (key, value) in environment) info.Environment[key] = value;
        return Process.Start(info) ?? throw new InvalidOperationException($"could not start {program}");
    }

    private Task<(int Code, string Output)> Weft(params string[] args) => Run("weft.dll", args);

    private static JsonElement Json(string output) => JsonDocument.Parse(output).RootElement;

    [Fact]
    public async Task The_cli_fails_over_to_the_next_coordinator_given_and_a_retried_creation_makes_one_object()
    {
        var dead = $"http://127.0.0.1:{CoordinatorNode.FreeTcpPort()}";
        var name = $"failover-{Guid.NewGuid():N}"[..20];

        var (code, output) = await Weft("tailnet", "create", name, "--server", $"{dead},{coordinator.Node.Api}", "--json");

        Assert.True(code == 0, output);
        Assert.Equal(name, Json(output).GetProperty("name").GetString());
        Assert.Single((await coordinator.Http.ListTailnets()).Tailnets, t => t.Name == name);
    }

    [Fact]
    public async Task An_admin_sets_shows_and_clears_a_tailnets_identity_provider_and_the_secret_never_prints()
    {
        var tailnet = await coordinator.NewTailnet("cli-sso");
        const string secret = "cli-client-secret-value";
        await using var provider = await OidcTestProvider.StartAsync([new OidcTestClient("weft", secret, ["http://127.0.0.1:1/unused"])]);
        var issuer = provider.IssuerIdentifier;

        var (missingCode, missing) = await Weft("tailnet", "sso", "set", tailnet, "--issuer", "https://id.example.com", "--client-id", "weft");
        Assert.NotEqual(0, missingCode);
        Assert.Contains("the client secret is missing: set $WEFT_OIDC_CLIENT_SECRET", missing);

        var (code, output) = await Run("weft.dll", new Dictionary<string, string> { ["WEFT_OIDC_CLIENT_SECRET"] = secret },
            "tailnet", "sso", "set", tailnet, "--issuer", issuer, "--client-id", "weft", "--allowed-domain", "example.com",
            "--allowed-domain", "corp.example", "--allowed-group", "eng", "--scope", "email", "--scope", "groups");
        Assert.True(code == 0, output);
        Assert.Contains("allowed domains: corp.example, example.com", output);
        Assert.Contains("scopes:          openid email groups", output);
        Assert.Matches(@"redirect URI:\s+http://127\.0\.0\.1:\d+/login/oidc/tn_\w+/callback", output);
        Assert.DoesNotContain(secret, output);

        var (showCode, shown) = await Weft("tailnet", "sso", "show", tailnet, "--json");
        Assert.True(showCode == 0, shown);
        Assert.Equal("weft", Json(shown).GetProperty("clientId").GetString());
        Assert.DoesNotContain(secret, shown);

        var (badCode, bad) = await Run("weft.dll", new Dictionary<string, string> { ["WEFT_OIDC_CLIENT_SECRET"] = secret },
            "tailnet", "sso", "set", tailnet, "--issuer", "http://id.example.com", "--client-id", "weft");
        Assert.NotEqual(0, badCode);
        Assert.Contains("must use https", bad);

        var (clearCode, cleared) = await Weft("tailnet", "sso", "clear", tailnet);
        Assert.True(clearCode == 0, cleared);
        var (goneCode, gone) = await Weft("tailnet", "sso", "show", tailnet);
        Assert.NotEqual(0, goneCode);
        Assert.Contains("has no identity provider", gone);
    }

    [Fact]
    public async Task An_admin_gives_users_roles_and_lists_them()
    {
        var tailnet = await coordinator.NewTailnet("cli-roles");
        var (createCode, created) = await Weft("user", "create", "alice@example.com", "--role", "owner", "--tailnet", tailnet);
        Assert.True(createCode == 0, created);
        Assert.Contains("created user alice@example.com", created);
        Assert.Contains("owner", created);
        Assert.Equal(0, (await Weft("user", "create", "bob@example.com", "--tailnet", tailnet)).Code);

        var (roleCode, role) = await Weft("user", "role", "bob@example.com", "auditor", "--tailnet", tailnet);
        Assert.True(roleCode == 0, role);
        Assert.Contains("bob@example.com is now auditor", role);
        var (badCode, bad) = await Weft("user", "role", "bob@example.com", "root", "--tailnet", tailnet);
        Assert.NotEqual(0, badCode);
        Assert.Contains("not one of owner, admin, member, auditor", bad);
        var (lastCode, last) = await Weft("user", "role", "alice@example.com", "member", "--tailnet", tailnet);
        Assert.NotEqual(0, lastCode);
        Assert.Contains("only owner", last);

        var (listCode, list) = await Weft("user", "list", "--tailnet", tailnet);
        Assert.True(listCode == 0, list);
        Assert.Matches(@"alice@example\.com\s+owner", list);
        Assert.Matches(@"bob@example\.com\s+auditor", list);
    }

    [Theory]
    [InlineData("198.18.40")]
    [InlineData("198.18.40.1/24")]
    [InlineData("0.0.0.0/0")]
    [InlineData("10.0/8")]
    public async Task Weft_agent_up_refuses_a_malformed_advertised_route_before_it_starts(string route)
    {
        var (code, output) = await Run("weft-agent.dll", "up", "--no-tunnels", "--login-server", coordinator.Control.ToString(), "--auth-key", "weft-auth-x",
            "--advertise-routes", $"198.18.41.0/24,{route}", "--state-dir", _stateDirectory);

        Assert.Equal(2, code);
        Assert.Contains($"error: --advertise-routes '{route}' is not a subnet in CIDR form", output);
    }

    [Fact]
    public async Task An_operator_makes_a_key_and_a_device_joins_with_weft_agent_up()
    {
        var tailnet = await coordinator.NewTailnet("cli");
        var (refusedCode, refused) = await Weft("authkey", "create", "--tailnet", tailnet, "--tag", "tag:ci");
        Assert.NotEqual(0, refusedCode);
        Assert.Contains("tag:ci is not defined in the policy's tagOwners", refused); // a tag exists once the policy defines it
        var policy = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(policy, """{ "tagOwners": { "tag:ci": [] } }""");
            var (setCode, set) = await Weft("policy", "set", policy, "--tailnet", tailnet);
            Assert.True(setCode == 0, set);
        }
        finally
        {
            File.Delete(policy);
        }
        var (code, created) = await Weft("authkey", "create", "--tailnet", tailnet, "--tag", "tag:ci", "--json");
        Assert.True(code == 0, created);
        var key = Json(created).GetProperty("key").GetString()!;

        // From a file, so that the key never shows in the process list.
        Directory.CreateDirectory(_stateDirectory);
        var keyFile = Path.Combine(_stateDirectory, "auth-key");
        File.WriteAllText(keyFile, key + "\n");
        var up = Start("weft-agent.dll", "up", "--foreground", "--no-tunnels", "--login-server", coordinator.Control.ToString(), "--auth-key-file", keyFile, "--hostname", "cli-box",
            "--endpoint", "198.18.7.7:41641", "--advertise-routes", "198.18.40.0/24", "--advertise-exit-node", "--state-dir", _stateDirectory);
        _running.Add(up);
        Assert.DoesNotContain(key, File.ReadAllText($"/proc/{up.Id}/cmdline"));

        var status = await WaitUntilRunning(_stateDirectory);
        var deviceId = status.GetProperty("deviceId").GetString()!;
        Assert.StartsWith("nodekey:", status.GetProperty("nodeKey").GetString());

        var (listCode, devices) = await Weft("device", "list", "--tailnet", tailnet);
        Assert.Equal(0, listCode);
        Assert.Contains("cli-box", devices);
        Assert.Contains("tag:ci", devices);
        var (showCode, shown) = await Weft("device", "show", deviceId, "--tailnet", tailnet, "--json");
        Assert.Equal(0, showCode);
        Assert.Equal(["198.18.7.7:41641"], Json(shown).GetProperty("endpoints").EnumerateArray().Select(e => e.GetString()!).ToArray());

        // Its routes: advertised by `up`, approved and revoked with `weft device routes`.
        string routes = "";
        for (var attempt = 0; attempt < 100 && !routes.Contains("198.18.40.0/24"); attempt++)
        {
            (_, routes) = await Weft("device", "routes", "show", deviceId, "--tailnet", tailnet);
            await Task.Delay(100);
        }
        Assert.Matches(@"advertised\s+0\.0\.0\.0/0,198\.18\.40\.0/24,::/0", routes);
        Assert.Matches(@"in force\s+-", routes);
        var (approveCode, approved) = await Weft("device", "routes", "approve", deviceId, "198.18.40.0/24", "--exit-node", "--tailnet", tailnet, "--json");
        Assert.True(approveCode == 0, approved);
        Assert.True(Json(approved).GetProperty("exitNode").GetBoolean());
        Assert.Equal(3, Json(approved).GetProperty("enabled").GetArrayLength());
        var (revokeCode, revoked) = await Weft("device", "routes", "revoke", deviceId, "--exit-node", "--tailnet", tailnet);
        Assert.True(revokeCode == 0, revoked);
        Assert.Matches(@"in force\s+198\.18\.40\.0/24\n", revoked);
        Assert.Matches(@"exit node\s+no", revoked);
        var (badCode, bad) = await Weft("device", "routes", "approve", deviceId, "198.18.41.0/24", "--tailnet", tailnet);
        Assert.NotEqual(0, badCode);
        Assert.Contains("does not advertise 198.18.41.0/24", bad);

        // The state file holds private keys: owner-only.
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_stateDirectory, "agent-state.json")));

        // Deleting the device through the CLI reaches the agent.
        Assert.Equal(0, (await Weft("device", "delete", deviceId, "--tailnet", tailnet)).Code);
        for (var attempt = 0; attempt < 300; attempt++)
        {
            var (_, text) = await Run("weft-agent.dll", "status", "--json", "--state-dir", _stateDirectory);
            if (text.Contains("\"needs-login\"")) return;
            await Task.Delay(100);
        }
        Assert.Fail("the agent never learned that its device was deleted");
    }

    /// <summary><c>weft-agent up --foreground --no-tunnels</c> against the test coordinator, with this test's state folder.</summary>
    private Task<(int Code, string Output)> AgentUp(IReadOnlyDictionary<string, string> environment, params string[] options) =>
        Run("weft-agent.dll", environment, ["up", "--foreground", "--no-tunnels", "--login-server", coordinator.Control.ToString(), "--state-dir", _stateDirectory, .. options]);

    private const string UnknownAuthKey = "weft-auth.tn_nothing.aaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    [Fact]
    public async Task Weft_agent_up_with_a_bad_key_exits_with_the_refusal()
    {
        var (code, output) = await AgentUp(new Dictionary<string, string>(), "--auth-key", UnknownAuthKey);

        Assert.Equal(1, code);
        Assert.Contains("auth_key_unknown", output);
    }

    [Fact]
    public async Task Weft_agent_up_takes_the_auth_key_from_the_environment_and_refuses_two_sources()
    {
        var (code, output) = await AgentUp(new Dictionary<string, string> { ["WEFT_AUTH_KEY"] = UnknownAuthKey });
        Assert.Equal(1, code);
        Assert.Contains("auth_key_unknown", output); // the key from WEFT_AUTH_KEY reached the coordinator

        var (both, refusal) = await AgentUp(new Dictionary<string, string>(), "--auth-key", "a", "--auth-key-file", "/nonexistent");
        Assert.Equal(2, both);
        Assert.Contains("not both", refusal);
        var (missing, unreadable) = await AgentUp(new Dictionary<string, string>(), "--auth-key-file", "/nonexistent/key");
        Assert.Equal(2, missing);
        Assert.Contains("cannot be read", unreadable);
    }

    [Fact]
    public async Task Weft_audit_shows_who_changed_a_tailnet_and_refuses_a_bad_window()
    {
        var name = $"audit-{Guid.NewGuid():N}"[..20];
        Assert.Equal(0, (await Weft("tailnet", "create", name)).Code);
        Assert.Equal(0, (await Weft("authkey", "create", "-t", name)).Code);

        var (code, output) = await Weft("audit", "-t", name, "--since", "1h");

        Assert.True(code == 0, output);
        Assert.Contains("POST /api/v1/tailnets/{tailnet}/auth-keys", output);
        Assert.Contains("operator-key ", output);
        var (json, text) = await Weft("audit", "-t", name, "--since", "1h", "--json");
        Assert.True(json == 0, text);
        Assert.Equal(2, Json(text).GetProperty("entries").GetArrayLength());
        var (refused, why) = await Weft("audit", "-t", name, "--since", "last week");
        Assert.NotEqual(0, refused);
        Assert.Contains("since must be a duration", why);
    }

    /// <summary>The agent's <c>status --json</c> once it says running.</summary>
    private async Task<JsonElement> WaitUntilRunning(string stateDirectory)
    {
        for (var attempt = 0; attempt < 300; attempt++)
        {
            var (statusCode, text) = await Run("weft-agent.dll", "status", "--json", "--state-dir", stateDirectory);
            if (statusCode == 0 && Json(text).GetProperty("state").GetString() == "running") return Json(text);
            await Task.Delay(100);
        }
        throw new TimeoutException("the agent never said it was running");
    }

    /// <summary>Collects a process's stdout and stderr as they come.</summary>
    private static System.Collections.Concurrent.ConcurrentQueue<string> Capture(Process process)
    {
        var lines = new System.Collections.Concurrent.ConcurrentQueue<string>();
        async Task Pump(StreamReader reader)
        {
            while (await reader.ReadLineAsync() is { } line) lines.Enqueue(line);
        }
        _ = Pump(process.StandardOutput);
        _ = Pump(process.StandardError);
        return lines;
    }

    private static async Task<string> WaitForLine(System.Collections.Concurrent.ConcurrentQueue<string> lines, string containing)
    {
        for (var attempt = 0; attempt < 600; attempt++)
        {
            if (lines.FirstOrDefault(l => l.Contains(containing, StringComparison.Ordinal)) is { } line) return line;
            await Task.Delay(100);
        }
        throw new TimeoutException($"no line with '{containing}' in:\n{string.Join("\n", lines)}");
    }

    [Fact]
    public async Task No_key_or_secret_reaches_the_coordinators_or_the_agents_log_even_at_debug_level()
    {
        var operatorKey = TestCoordinator.OperatorKey;
        var coordinatorProcess = Start("weft.dll", new Dictionary<string, string>
        {
            ["Serilog__MinimumLevel__Default"] = "Debug",
            ["Weft__BootstrapOperatorKey"] = operatorKey,
        }, "--data-dir", Path.Combine(_stateDirectory, "coordinator"), "--api-listen", "http://127.0.0.1:0", "--control-listen", "http://127.0.0.1:0", "--akka-port", "0");
        _running.Add(coordinatorProcess);
        var coordinatorLog = Capture(coordinatorProcess);
        var api = new Uri(System.Text.RegularExpressions.Regex.Match(await WaitForLine(coordinatorLog, "admin API :"), "http://[^ ]+/").Value.Replace("api/v1", ""));
        var control = System.Text.RegularExpressions.Regex.Match(await WaitForLine(coordinatorLog, "control   :"), "http://[^ ]+/").Value;

        using var http = TestCoordinator.NewClient(api, operatorKey);
        var tailnet = (await http.CreateTailnet("secrets")).Id;
        var authKey = (await http.CreateAuthKey(tailnet)).Key;
        const string wrongKey = "weft_aaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        using (var intruder = TestCoordinator.NewClient(api, wrongKey))
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await intruder.GetAsync("/api/v1/tailnets")).StatusCode);

        Directory.CreateDirectory(_stateDirectory);
        var keyFile = Path.Combine(_stateDirectory, "auth-key");
        File.WriteAllText(keyFile, authKey + "\n");
        var agentDirectory = Path.Combine(_stateDirectory, "agent");
        var agent = Start("weft-agent.dll", "up", "--foreground", "--no-tunnels", "--login-server", control, "--auth-key-file", keyFile, "--state-dir", agentDirectory, "--log-level", "debug");
        _running.Add(agent);
        var agentLog = Capture(agent);
        await WaitUntilRunning(agentDirectory);
        Assert.Single((await http.ListDevices(tailnet)).Devices);

        var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(agentDirectory, "agent-state.json"))).RootElement;
        var machine = state.GetProperty("machinePrivateKey").GetString()!;
        var node = state.GetProperty("nodePrivateKey").GetString()!;
        agent.Kill(entireProcessTree: true);
        coordinatorProcess.Kill(entireProcessTree: true);
        await agent.WaitForExitAsync();
        await coordinatorProcess.WaitForExitAsync();

        var logs = string.Join("\n", coordinatorLog) + "\n" + string.Join("\n", agentLog);
        Assert.Contains("DBG", logs); // debug lines were written, so they were checked too
        foreach (var (what, secret) in new[]
        {
            ("the operator key", operatorKey), ("the operator key's secret", operatorKey[(operatorKey.LastIndexOf('_') + 1)..]),
            ("the auth key", authKey), ("the auth key's secret", authKey[(authKey.LastIndexOf('.') + 1)..]),
            ("a wrong API key presented", wrongKey),
            ("the machine private key", machine), ("the node private key", node),
            ("the machine private key in base64", Convert.ToBase64String(Convert.FromHexString(machine))),
            ("the node private key in base64", Convert.ToBase64String(Convert.FromHexString(node))),
        })
        {
            Assert.False(logs.Contains(secret, StringComparison.OrdinalIgnoreCase), $"{what} appears in the logs");
        }
    }

    [Fact]
    public async Task Help_never_prints_the_api_key_from_the_environment()
    {
        foreach (var command in new[] { new[] { "tailnet", "--help" }, ["tailnet", "list", "--help"], ["device", "show", "--help"], ["apikey", "create", "--help"] })
        {
            var (code, output) = await Weft(command);
            Assert.Equal(0, code);
            Assert.Contains("--api-key", output);
            Assert.DoesNotContain(TestCoordinator.OperatorKey, output);
        }
        // The environment still supplies the key when a command runs.
        Assert.Equal(0, (await Weft("tailnet", "list")).Code);
    }

    [Fact]
    public async Task Status_without_a_running_agent_says_so()
    {
        var (code, output) = await Run("weft-agent.dll", "status", "--state-dir", _stateDirectory);

        Assert.Equal(1, code);
        Assert.Contains("no weft-agent daemon answers at", output);
        Assert.Contains("systemctl start weft-agent, or weft-agent daemon", output);

        // With --json the error is JSON too, on standard output, with a code a script can test.
        var (jsonCode, json) = await Run("weft-agent.dll", "up", "--hostname", "x", "--json", "--state-dir", _stateDirectory);
        Assert.Equal(1, jsonCode);
        Assert.Equal("no_daemon", Json(json).GetProperty("code").GetString());
        var (flagCode, flag) = await Run("weft-agent.dll", "up", "--tun", "wg9", "--json", "--state-dir", _stateDirectory);
        Assert.Equal(2, flagCode);
        Assert.Contains("--tun is the daemon's", Json(flag).GetProperty("error").GetString());
    }

    [Fact]
    public async Task Users_keys_and_api_keys_round_trip_through_the_cli()
    {
        var tailnet = await coordinator.NewTailnet("cli-admin");

        Assert.Equal(0, (await Weft("user", "create", "bob@example.com", "--tailnet", tailnet)).Code);
        var (_, users) = await Weft("user", "list", "--tailnet", tailnet);
        Assert.Contains("bob@example.com", users);
        var (_, key) = await Weft("authkey", "create", "--tailnet", tailnet, "--user", "bob@example.com", "--reusable", "--json");
        var keyId = Json(key).GetProperty("authKey").GetProperty("id").GetString()!;
        Assert.Equal(0, (await Weft("authkey", "revoke", keyId, "--tailnet", tailnet)).Code);
        var (_, keys) = await Weft("authkey", "list", "--tailnet", tailnet);
        Assert.Contains("revoked", keys);

        var (apiCode, apiKey) = await Weft("apikey", "create", "--tailnet", tailnet, "--json");
        Assert.Equal(0, apiCode);
        Assert.Equal("tailnet", Json(apiKey).GetProperty("apiKey").GetProperty("scope").GetString());

        var (badCode, bad) = await Weft("device", "list");
        Assert.Equal(1, badCode);
        Assert.Contains("--tailnet", bad);
        var (missingCode, missing) = await Weft("device", "show", "dev_nope", "--tailnet", tailnet);
        Assert.Equal(1, missingCode);
        Assert.Contains("not_found", missing);
    }

    [Fact]
    public async Task Policies_are_set_read_validated_and_tested_through_the_cli()
    {
        var tailnet = await coordinator.NewTailnet("cli-policy");
        var file = Path.Combine(Path.GetTempPath(), $"weft-policy-{Guid.NewGuid():N}.hujson");
        var broken = file + ".broken";
        try
        {
            await File.WriteAllTextAsync(file, """
                // ops may ssh to servers
                {
                  "groups": { "group:ops": ["carol@example.com"] },
                  "tagOwners": { "tag:server": ["group:ops"] },
                  "acls": [ { "action": "accept", "src": ["group:ops"], "dst": ["tag:server:22"] } ],
                  "tests": [ { "src": "carol@example.com", "accept": ["tag:server:22"] } ],
                }
                """);
            await File.WriteAllTextAsync(broken, """{ "acls": [ { "action": "accept", "src": ["group:ghost"], "dst": ["*:*"] } ] }""");

            var (validateCode, validated) = await Weft("policy", "validate", file, "--tailnet", tailnet);
            Assert.True(validateCode == 0, validated);
            Assert.Contains("1 rule(s), 1 test(s) passed", validated);
            var (setCode, set) = await Weft("policy", "set", file, "--tailnet", tailnet);
            Assert.True(setCode == 0, set);
            Assert.Contains("version 2", set);
            var (_, text) = await Weft("policy", "get", "--tailnet", tailnet);
            Assert.Contains("ops may ssh to servers", text);
            var (_, allowed) = await Weft("policy", "test", "--tailnet", tailnet, "--src", "carol@example.com", "--dst", "tag:server:22");
            Assert.StartsWith("allowed", allowed);
            var (_, denied) = await Weft("policy", "test", "--tailnet", tailnet, "--src", "carol@example.com", "--dst", "tag:server:80");
            Assert.StartsWith("denied", denied);

            var (brokenCode, refused) = await Weft("policy", "set", broken, "--tailnet", tailnet);
            Assert.Equal(1, brokenCode);
            Assert.Contains("line 1, column 43", refused);
            Assert.Contains("group:ghost is not defined in groups", refused);
            Assert.Contains("ops may ssh to servers", (await Weft("policy", "get", "--tailnet", tailnet)).Output);
        }
        finally
        {
            File.Delete(file);
            File.Delete(broken);
        }
    }

    public void Dispose()
    {
        foreach (var process in _running)
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            process.WaitForExit(10_000);
            process.Dispose();
        }
        if (Directory.Exists(_stateDirectory)) Directory.Delete(_stateDirectory, recursive: true);
    }
}
