using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Akka.Actor;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Cluster.Tests.Support;
using Weft.NodeAgent.Agent;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>
/// The agent daemon and its clients, as <c>tailscaled</c> and <c>tailscale</c>: a real daemon (control
/// plane only, so no root) against a real coordinator, driven over its local API on a real unix
/// socket, through up, down, up with new flags, logout, login, a daemon restart and a crash of its
/// control client. The CLI is the same HTTP client (<see cref="LocalApi.QueryAsync"/>).
/// </summary>
public sealed class AgentDaemonTests : IAsyncLifetime
{
    private readonly string _state = Path.Combine(Path.GetTempPath(), "weft-daemon-" + Guid.NewGuid().ToString("N")[..8]);
    private AgentDaemon? _daemon;

    private async Task<AgentDaemon> StartDaemon()
    {
        _daemon = await AgentDaemon.StartAsync(new AgentDaemonOptions { StateDirectory = _state, Tunnels = false }, NullLoggerFactory.Instance);
        return _daemon;
    }

    private async Task StopDaemon()
    {
        if (_daemon is not null) await _daemon.DisposeAsync();
        _daemon = null;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    // xunit 2 runs IAsyncLifetime's clean-up for a test class; it never called IAsyncDisposable's,
    // which left each test's state folder (state file and socket) in the temp folder.
    public async Task DisposeAsync()
    {
        await StopDaemon();
        if (Directory.Exists(_state)) Directory.Delete(_state, recursive: true);
    }

    private async Task<(HttpStatusCode Status, JsonElement Answer)> Ask(string command, object? body = null)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var (status, answer) = await LocalApi.QueryAsync(_state, command, body, timeout.Token);
        using (answer) return (status, answer.RootElement.Clone());
    }

    private async Task<JsonElement> Status() => (await Ask("status")).Answer;

    /// <summary>A string property of an answer; "" when it is absent (null fields are left out).</summary>
    private static string Text(JsonElement element, string property) =>
        element.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString()! : "";

    [Fact]
    public async Task Up_down_up_with_new_flags_logout_login_and_restarts_all_on_one_running_daemon()
    {
        await using var storage = TestStorage.NewSqlite();
        // A device whose stream ended counts as offline after 3 s (a minute by default).
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:SessionReattachSeconds", "1"), new("Weft:Control:PresenceTimeoutSeconds", "3")]);
        var tailnet = (await node.Http.CreateTailnet("daemon-" + Guid.NewGuid().ToString("N")[..8])).Id;
        var firstKey = (await node.Http.CreateAuthKey(tailnet)).Key;
        await StartDaemon();

        // A fresh daemon waits for its first up, and says how.
        var fresh = await Status();
        Assert.Equal("needs-login", Text(fresh, "state"));
        Assert.Equal("not_logged_in", Text(fresh, "code"));
        Assert.StartsWith("mkey:", Text(fresh, "machineKey"));
        Assert.StartsWith("nodekey:", Text(fresh, "nodeKey"));
        var (noServer, noServerAnswer) = await Ask("up", new PrefsChange { AuthKey = firstKey });
        Assert.Equal(HttpStatusCode.Conflict, noServer);
        Assert.Equal("needs_login_server", Text(noServerAnswer, "code"));

        // up: joins, and waits until it runs. The auth key is used, never written down.
        var (upStatus, up) = await Ask("up", new PrefsChange { LoginServer = node.Control.ToString(), AuthKey = firstKey, Hostname = "daemon-a" });
        Assert.True(upStatus == HttpStatusCode.OK, up.ToString());
        Assert.Equal("running", Text(up, "state"));
        var firstDevice = Text(await Status(), "deviceId");
        Assert.Equal("daemon-a", (await node.Http.GetDevice(tailnet, firstDevice)).Hostname);
        var savedPrefs = File.ReadAllText(Path.Combine(_state, AgentPrefsFile.FileName));
        Assert.Contains(node.Control.ToString().TrimEnd('/'), savedPrefs);
        Assert.DoesNotContain(firstKey, savedPrefs);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_state, AgentPrefsFile.FileName)));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_state, LocalApi.SocketName)));
        // Its metrics: Prometheus text on the same socket (without tunnels, no per-peer counters).
        using (var local = LocalApi.Client(_state))
        {
            var metrics = await local.GetStringAsync("metrics");
            Assert.Matches("""weft_agent_control_connected(\{[^}]*\})? 1""", metrics);
        }

        // down: no stream; the coordinator sees the device go offline.
        var (_, down) = await Ask("down");
        Assert.Equal("stopped", Text(down, "state"));
        await Eventually.Until(() => node.Http.GetDevice(tailnet, firstDevice), d => !d.Online, "the device offline after down");

        // up with a new flag: the daemon comes back with it, as the same device, without an auth key.
        var (_, upAgain) = await Ask("up", new PrefsChange { AdvertiseRoutes = "198.51.100.0/24" });
        Assert.Equal("running", Text(upAgain, "state"));
        await Eventually.Until(() => node.Http.GetDevice(tailnet, firstDevice), d => d.Online && d.Routes?.Advertised.Contains("198.51.100.0/24") == true,
            "the route advertised on the running daemon");
        Assert.Equal(firstDevice, Text(await Status(), "deviceId"));

        // set changes a pref on the running daemon without bringing it down or up.
        var (setStatus, _) = await Ask("set", new PrefsChange { AdvertiseRoutes = "" });
        Assert.Equal(HttpStatusCode.OK, setStatus);
        await Eventually.Until(() => node.Http.GetDevice(tailnet, firstDevice), d => d.Routes is null || d.Routes.Advertised.Count == 0, "the route withdrawn by set");
        Assert.Equal("running", Text(await Status(), "state"));

        // logout, then login with a new key, without restarting anything. The machine key stays (as in
        // Tailscale), so the coordinator authorises the same device again.
        var (_, logout) = await Ask("logout");
        Assert.True(logout.GetProperty("coordinatorTold").GetBoolean(), logout.ToString());
        Assert.Equal("needs-login", Text(await Status(), "state"));
        var (refusedStatus, refused) = await Ask("login", new PrefsChange { AuthKey = firstKey });
        Assert.Equal(HttpStatusCode.Conflict, refusedStatus);
        Assert.Equal("auth_key_used", Text(refused, "code"));
        var (loginStatus, login) = await Ask("login", new PrefsChange { AuthKey = (await node.Http.CreateAuthKey(tailnet)).Key, Hostname = "daemon-b" });
        Assert.True(loginStatus == HttpStatusCode.OK, login.ToString());
        Assert.Equal("running", Text(login, "state"));
        var secondDevice = Text(await Status(), "deviceId");
        Assert.Equal(firstDevice, secondDevice);
        var again = await Eventually.Until(() => node.Http.GetDevice(tailnet, secondDevice), d => d.Online, "online after the new login");
        Assert.Equal("active", again.Status);
        Assert.Equal("daemon-b", again.Hostname);

        // Its control client crashes: the restarted one keeps the login made since the daemon started.
        _daemon!.Control.Tell(Kill.Instance);
        await Eventually.Until(Status, s => Text(s, "state") == "running" && Text(s, "coordinator").Length > 0, "running again after the control client's restart");
        Assert.Equal(secondDevice, Text(await Status(), "deviceId"));

        // A restarted daemon comes back as it was left: logged in and running, with no key given.
        await StopDaemon();
        await StartDaemon();
        await Eventually.Until(Status, s => Text(s, "state") == "running", "running after the daemon's restart");
        Assert.Equal(secondDevice, Text(await Status(), "deviceId"));
        Assert.Equal("daemon-b", Text((await Ask("prefs")).Answer, "hostname"));

        // And one that was down stays down.
        await Ask("down");
        await StopDaemon();
        await StartDaemon();
        Assert.Equal("stopped", Text(await Status(), "state"));
        await Eventually.Until(() => node.Http.GetDevice(tailnet, secondDevice), d => !d.Online, "offline: the restarted daemon stayed down");
    }

    [Fact]
    public async Task A_daemon_whose_control_client_fails_past_its_restart_limit_says_it_stopped_instead_of_running_without_it()
    {
        var daemon = await StartDaemon();
        Assert.False(daemon.Stopped.IsCompleted);

        // Ten failures are restarts: the daemon carries on and answers.
        for (var i = 0; i < 10; i++) daemon.Control.Tell(Kill.Instance);
        Assert.Equal("needs-login", Text(await Status(), "state"));
        Assert.False(daemon.Stopped.IsCompleted);

        // The eleventh within the minute stops the control client, and with it the agent's actors:
        // the daemon's Stopped completes, on which `weft-agent` exits with an error for systemd to restart it.
        daemon.Control.Tell(Kill.Instance);
        await daemon.Stopped.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(daemon.Control.IsNobody() || await WasTerminated(daemon.Control));
    }

    private static async Task<bool> WasTerminated(IActorRef actor)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        return await actor.WatchAsync(timeout.Token);
    }

    [Fact]
    public async Task The_local_api_answers_bad_requests_with_a_code_and_a_sentence_and_changes_nothing()
    {
        await StartDaemon();
        var before = File.Exists(Path.Combine(_state, AgentPrefsFile.FileName));
        using var http = LocalApi.Client(_state);

        async Task<(HttpStatusCode, string)> Send(HttpMethod method, string path, string? body)
        {
            using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await http.SendAsync(request);
            var text = await response.Content.ReadAsStringAsync();
            using var json = JsonDocument.Parse(text); // every answer is JSON
            return (response.StatusCode, json.RootElement.GetProperty("code").GetString()!);
        }

        Assert.Equal((HttpStatusCode.BadRequest, "malformed_request"), await Send(HttpMethod.Post, "up", "{\"loginServer\": "));
        Assert.Equal((HttpStatusCode.BadRequest, "malformed_request"), await Send(HttpMethod.Post, "up", "{\"fly\": true}"));
        Assert.Equal((HttpStatusCode.BadRequest, "invalid_prefs"), await Send(HttpMethod.Post, "up", "{\"loginServer\": \"ftp://coordinator\"}"));
        Assert.Equal((HttpStatusCode.BadRequest, "invalid_prefs"), await Send(HttpMethod.Post, "set", "{\"advertiseRoutes\": \"0.0.0.0/0\"}"));
        Assert.Equal((HttpStatusCode.BadRequest, "invalid_prefs"), await Send(HttpMethod.Post, "up", "{\"forceReauth\": true}"));
        Assert.Equal((HttpStatusCode.RequestEntityTooLarge, "request_too_large"), await Send(HttpMethod.Post, "up", "{\"hostname\": \"" + new string('x', 5000) + "\"}"));
        Assert.Equal((HttpStatusCode.NotFound, "unknown_command"), await Send(HttpMethod.Get, "fly", null));
        Assert.Equal((HttpStatusCode.NotFound, "unknown_command"), await Send(HttpMethod.Get, "/x", null));   // shorter than the API's prefix
        Assert.Equal((HttpStatusCode.NotFound, "unknown_command"), await Send(HttpMethod.Post, "/", "{}"));
        Assert.Equal((HttpStatusCode.NotFound, "wrong_method"), await Send(HttpMethod.Get, "up", null));
        Assert.Equal((HttpStatusCode.Conflict, "no_tunnels"), await Send(HttpMethod.Post, "ping", "{\"target\": \"x\"}"));

        Assert.Equal(before, File.Exists(Path.Combine(_state, AgentPrefsFile.FileName)));
        Assert.Equal("needs-login", Text(await Status(), "state"));

        // A second daemon on the same state refuses to start, and the first keeps answering.
        var second = await Assert.ThrowsAsync<IOException>(() => AgentDaemon.StartAsync(new AgentDaemonOptions { StateDirectory = _state, Tunnels = false }, NullLoggerFactory.Instance));
        Assert.Contains("already runs", second.Message);
        Assert.Equal("needs-login", Text(await Status(), "state"));
    }

    [Fact]
    public async Task A_damaged_prefs_file_stops_the_daemon_with_its_name_and_is_left_as_it_was()
    {
        Directory.CreateDirectory(_state);
        var path = Path.Combine(_state, AgentPrefsFile.FileName);
        await File.WriteAllTextAsync(path, "{\"loginServers\": [\"gopher://x\"]}");
        var error = await Assert.ThrowsAsync<NodeAgent.Control.AgentStateException>(StartDaemon);
        Assert.Contains(path, error.Message);
        Assert.Contains("not an http(s) URL", error.Message);
        Assert.Equal("{\"loginServers\": [\"gopher://x\"]}", await File.ReadAllTextAsync(path));
    }
}
