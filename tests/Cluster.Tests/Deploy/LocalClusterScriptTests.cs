using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Weft.Cluster.Tests.MultiNode;
using Weft.Cluster.Tests.Support;
using Xunit.Abstractions;

namespace Weft.Cluster.Tests.Deploy;

/// <summary>
/// deploy/local-cluster as an operator uses it: start PostgreSQL and three self-contained coordinators
/// (built with the publish profile), kill one, see the others carry on, bring it back, see a node the
/// cluster downed started again by the script (as by systemd), stop a node gracefully, stop everything.
/// And the self-contained agent runs on a machine with no .NET at all.
/// </summary>
[Collection(CoordinatorProcesses.Name)]
public class LocalClusterScriptTests(ITestOutputHelper output)
{
    private static readonly string Root = DeployManifestTests.RepositoryRoot();

    [SkippableFact]
    public async Task The_local_cluster_starts_three_nodes_survives_a_kill_takes_the_node_back_and_stops_cleanly()
    {
        Skip.If(PostgresServer.FindBinaries() is null && !TestPrerequisites.AllRequired, "PostgreSQL server binaries are not installed (./test.sh installs them)");
        var state = Directory.CreateTempSubdirectory("weft-local-cluster-").FullName;
        if (Environment.UserName == "root") await Run("chmod", ["755", state]); // PostgreSQL runs as its own user inside
        var offset = FreeOffset();
        var environment = new Dictionary<string, string> { ["WEFT_LOCAL_CLUSTER"] = state, ["WEFT_LOCAL_PORT_OFFSET"] = offset.ToString() };
        try
        {
            var started = await Script(environment, "start");
            Assert.Equal(3, Lines(started).Count(l => l.Contains(" ready ") && l.Contains("=up") && l.Split("=up").Length == 4));
            var exports = await Script(environment, "env");
            var servers = Export(exports, "WEFT_SERVER");
            var key = Export(exports, "WEFT_API_KEY");

            await Script(environment, "kill", "2");
            var status = await Eventually.Until(() => Script(environment, "status"),
                text => Lines(text).Count(l => l.StartsWith("node") && l.Contains(" ready ") && l.Split("=up").Length == 3) == 2,
                "the two survivors ready, each seeing two members");
            Assert.Contains("node2  stopped", status);

            // The CLI, given every node, works on while one is down.
            var created = await Run(Path.Combine(Root, "artifacts", "publish", "weft-linux-x64", "weft"),
                ["tailnet", "create", "local-cluster-demo", "--server", servers, "--api-key", key]);
            Assert.Contains("local-cluster-demo", created);

            var back = await Script(environment, "restart", "2");
            Assert.Equal(3, Lines(back).Count(l => l.Contains(" ready ") && l.Split("=up").Length == 4));

            // A node the cluster downs (here: paused until the others remove it) exits by itself when it
            // wakes up, and the script starts it again, as systemd's unit does; it rejoins.
            var paused = File.ReadAllText(Path.Combine(state, "node3.pid")).Trim();
            await Run("kill", ["-STOP", paused]);
            try
            {
                using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
                await Eventually.Until(async () => await http.GetStringAsync($"http://127.0.0.1:{8081 + offset}/healthz"),
                    health => !health.Contains($":{4053 + offset}\"", StringComparison.Ordinal), "node1 has removed the paused node3", TimeSpan.FromSeconds(90));
            }
            finally
            {
                await Run("kill", ["-CONT", paused]);
            }
            await Eventually.Until(() => Script(environment, "status"),
                text => Lines(text).Count(l => l.Contains(" ready ") && l.Split("=up").Length == 4) == 3 && !text.Contains($"pid {paused} "),
                "node3 started again by the script, and the three ready with three members", TimeSpan.FromSeconds(120));
            Assert.Matches("local-cluster: node3 exited with code [1-9][0-9]*; starting it again in 2 s", File.ReadAllText(Path.Combine(state, "node3.log")));
            var stopped = await Script(environment, "stop", "1");
            Assert.Contains("node1 left the cluster and stopped", stopped);
            await Script(environment, "stop");
            Assert.All(Lines(await Script(environment, "status")), l => Assert.EndsWith("stopped", l));

            // A pid file outlives its node, and the kernel hands its number to another process sooner or later:
            // the script never takes that process for the node, and never stops or kills it.
            using var stranger = Process.Start(new ProcessStartInfo("sleep", "300")) ?? throw new InvalidOperationException("cannot start sleep");
            try
            {
                File.WriteAllText(Path.Combine(state, "node1.pid"), stranger.Id.ToString());
                File.WriteAllText(Path.Combine(state, "node1.supervisor"), stranger.Id.ToString());
                Assert.Contains("node1  stopped", await Script(environment, "status"));
                var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => Script(environment, "kill", "1"));
                Assert.Contains("node1 is not running", refused.Message);
                Assert.Contains("node1 is not running", await Script(environment, "stop", "1"));
                Assert.False(stranger.HasExited, "the script signalled a process that is not its node");
            }
            finally
            {
                stranger.Kill();
            }
        }
        catch
        {
            foreach (var log in Directory.GetFiles(state, "node*.log")) output.WriteLine($"===== {log}\n{string.Join("\n", File.ReadLines(log).TakeLast(40))}");
            throw;
        }
        finally
        {
            try { await Script(environment, "stop"); } catch (Exception) { /* already down */ }
            Directory.Delete(state, recursive: true);
        }
    }

    [Fact]
    public async Task The_self_contained_agent_runs_where_there_is_no_dotnet()
    {
        await Run("dotnet", ["publish", Path.Combine(Root, "src", "NodeAgent"), "-p:PublishProfile=linux-x64", "-v", "quiet", "-nologo"]);
        var agent = Path.Combine(Root, "artifacts", "publish", "weft-agent-linux-x64", "weft-agent");

        var help = await Run(agent, ["up", "--help"], new Dictionary<string, string> { ["PATH"] = "/usr/bin:/bin", ["DOTNET_ROOT"] = "/nonexistent" });

        Assert.Contains("--login-server", help);
        Assert.Contains("--auth-key", help);
    }

    private static Task<string> Script(IReadOnlyDictionary<string, string> environment, params string[] args) =>
        Run(Path.Combine(Root, "deploy", "local-cluster"), args, environment);

    private static async Task<string> Run(string program, string[] args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args) info.ArgumentList.Add(arg);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) info.Environment[name] = value;
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {program}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await process.WaitForExitAsync(timeout.Token);
        var text = await stdout + await stderr;
        if (process.ExitCode != 0) throw new InvalidOperationException($"{Path.GetFileName(program)} {string.Join(' ', args)} exited with {process.ExitCode}:\n{text}");
        return text;
    }

    private static IEnumerable<string> Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Where(l => l.StartsWith("node"));

    private static string Export(string exports, string name) =>
        exports.Split('\n').Select(l => l.Trim()).First(l => l.StartsWith($"export {name}=", StringComparison.Ordinal))[$"export {name}=".Length..];

    /// <summary>An offset that makes every port the script uses free on this machine.</summary>
    private static int FreeOffset()
    {
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var offset = Random.Shared.Next(1000, 20000);
            int[] ports = [5439, 8081, 8082, 8083, 7651, 7652, 7653, 4051, 4052, 4053];
            if (ports.All(p => Free(p + offset))) return offset;
        }
        throw new InvalidOperationException("no free port range for the local cluster");
    }

    private static bool Free(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
