using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Cli;
using Weft.Contracts.Admin;
using Weft.LoadTest.Scenarios;

namespace Weft.LoadTest.Coordinators;

/// <summary>
/// The cluster a load run drives: its coordinators' control URLs (agents are spread over them), its
/// admin API (tailnets and keys are made there, and the truth is read from it at the end), and the
/// processes whose CPU and memory are sampled. Either an existing cluster (for example
/// <c>deploy/local-cluster</c>) or one coordinator this tester starts itself on SQLite.
/// </summary>
public sealed class TargetCluster : IAsyncDisposable
{
    private readonly LocalCoordinator? _local;

    private TargetCluster(IReadOnlyList<Uri> control, IReadOnlyList<Uri> api, string apiKey, IReadOnlyList<int> sampledProcesses, LocalCoordinator? local)
    {
        Control = control;
        ApiUrls = api;
        ApiKey = apiKey;
        Admin = new AdminApiClient(api, apiKey);
        SampledProcesses = sampledProcesses;
        _local = local;
    }

    public IReadOnlyList<Uri> Control { get; }

    public IReadOnlyList<Uri> ApiUrls { get; }

    /// <summary>The operator key the tester uses (another generator of the same run uses it too).</summary>
    public string ApiKey { get; }

    public AdminApiClient Admin { get; }

    /// <summary>Coordinator process ids on this machine, sampled for CPU and RSS (may be empty for a remote cluster).</summary>
    public IReadOnlyList<int> SampledProcesses { get; }

    public static TargetCluster Existing(IReadOnlyList<Uri> control, IReadOnlyList<Uri> api, string apiKey, IReadOnlyList<int> sampledProcesses) =>
        new(control, api, apiKey, sampledProcesses, null);

    /// <summary>Starts one coordinator (embedded SQLite, no relay) as a process of its own, with the per-address limits off: every simulated node connects from 127.0.0.1.</summary>
    public static async Task<TargetCluster> StartLocalAsync(TextWriter log)
    {
        var local = await LocalCoordinator.StartAsync(log);
        return new TargetCluster([local.Control], [local.Api], local.OperatorKey, [local.ProcessId], local);
    }

    /// <summary>
    /// Makes a tailnet for a run: with a tagged policy, the policy of <paramref name="groups"/> groups
    /// first (a tag must be defined before a key may carry it), then a reusable key per group, and an
    /// ephemeral one per group when the run has ephemeral nodes.
    /// </summary>
    public async Task<LoadTailnet> CreateTailnetAsync(string name, int groups = 1, bool taggedPolicy = false, bool ephemeral = false, int? ephemeralTimeoutSeconds = null)
    {
        var tailnet = await Admin.PostAsync("/api/v1/tailnets", new CreateTailnetRequest(name, EphemeralTimeoutSeconds: ephemeralTimeoutSeconds));
        var id = tailnet.GetProperty("id").GetString()!;
        if (taggedPolicy) await SetPolicyAsync(id, LoadPolicy.Text(groups, marker: 0));
        var keys = new string[groups];
        var ephemeralKeys = new string?[groups];
        for (var g = 0; g < groups; g++)
        {
            string[] tags = taggedPolicy ? [LoadPolicy.GroupTag(g)] : [];
            keys[g] = (await Admin.PostAsync($"/api/v1/tailnets/{id}/auth-keys", new { reusable = true, tags, description = "weft-loadtest" })).GetProperty("key").GetString()!;
            if (ephemeral)
                ephemeralKeys[g] = (await Admin.PostAsync($"/api/v1/tailnets/{id}/auth-keys", new { reusable = true, ephemeral = true, tags, description = "weft-loadtest ephemeral" }))
                    .GetProperty("key").GetString()!;
        }
        return new LoadTailnet(id, keys, ephemeralKeys);
    }

    public Task SetPolicyAsync(string tailnetId, string policy) => Admin.PostTextAsync($"/api/v1/tailnets/{tailnetId}/policy", policy, "application/hujson");

    public Task DeleteDeviceAsync(string tailnetId, string deviceId) => Admin.DeleteAsync($"/api/v1/tailnets/{tailnetId}/devices/{deviceId}");

    /// <summary>Every device of a tailnet as the cluster holds it.</summary>
    public async Task<IReadOnlyList<DeviceResource>> DevicesAsync(string tailnetId)
    {
        var answer = await Admin.GetAsync($"/api/v1/tailnets/{tailnetId}/devices");
        return answer.Deserialize<DeviceListResource>(AdminJson.Options)!.Devices;
    }

    public Task DeleteTailnetAsync(string tailnetId) => Admin.DeleteAsync($"/api/v1/tailnets/{tailnetId}");

    public async ValueTask DisposeAsync()
    {
        Admin.Dispose();
        if (_local is not null) await _local.DisposeAsync();
    }
}

/// <summary>A run's tailnet: its id, and the auth keys of each policy group (ephemeral ones only when the run has ephemeral nodes).</summary>
public sealed record LoadTailnet(string Id, IReadOnlyList<string> Keys, IReadOnlyList<string?> EphemeralKeys);

/// <summary>One coordinator as its own process (<c>dotnet weft.dll</c> from next to the tester), removed with its data when disposed.</summary>
internal sealed partial class LocalCoordinator : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _dataDirectory;

    private LocalCoordinator(Process process, string dataDirectory, Uri api, Uri control, string operatorKey)
    {
        _process = process;
        _dataDirectory = dataDirectory;
        Api = api;
        Control = control;
        OperatorKey = operatorKey;
        // A tester stopped with SIGTERM or Ctrl+C (or one that fails) must not leave its coordinator running.
        AppDomain.CurrentDomain.ProcessExit += StopOnExit;
    }

    private void StopOnExit(object? sender, EventArgs e)
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.WaitForExit(5000);
            if (Directory.Exists(_dataDirectory)) Directory.Delete(_dataDirectory, recursive: true);
        }
        catch (Exception error) when (error is InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            // Already gone, or the folder is still in use: nothing more can be done on the way out.
        }
    }

    public Uri Api { get; }

    public Uri Control { get; }

    public string OperatorKey { get; }

    public int ProcessId => _process.Id;

    [GeneratedRegex(@"admin API : (http://\S+?)/api/v1")]
    private static partial Regex ApiLine();

    [GeneratedRegex(@"control   : (http://\S+?/)\s")]
    private static partial Regex ControlLine();

    public static async Task<LocalCoordinator> StartAsync(TextWriter log)
    {
        var data = Path.Combine(Path.GetTempPath(), "weft-loadtest-" + Guid.NewGuid().ToString("N"));
        var operatorKey = ApiKeyToken.Generate().ToString();
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { Path.Combine(AppContext.BaseDirectory, "weft.dll"), "--data-dir", data, "--api-listen", "http://127.0.0.1:0",
                     "--control-listen", "http://127.0.0.1:0", "--akka-port", "0" })
            info.ArgumentList.Add(arg);
        info.Environment["Weft__BootstrapOperatorKey"] = operatorKey;
        info.Environment["Weft__Relay__Embedded"] = "false";
        info.Environment["Weft__Telemetry__Canary"] = "false"; // the fleet is the measurement; per-device memory counts only its sessions
        // Every simulated node connects from 127.0.0.1 and joins with its tailnet's one key; a real fleet does neither.
        info.Environment["Weft__Control__ConnectsPerSecondPerAddress"] = "0";
        info.Environment["Weft__Control__RegistrationsPerSecondPerAuthKey"] = "0";
        info.Environment["Weft__Api__RequestsPerSecondPerAddress"] = "0";
        info.Environment["Weft__Api__RequestsPerSecondPerKey"] = "0";
        // WEFT_LOADTEST_COORDINATOR_LOG=Information (or Debug) shows what the coordinator does, in the run's log.
        var level = Environment.GetEnvironmentVariable("WEFT_LOADTEST_COORDINATOR_LOG");
        info.Environment["Serilog__MinimumLevel__Default"] = level ?? "Warning";
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start the coordinator (dotnet weft.dll)");
        var api = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var control = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            if (level is not null) lock (log) log.WriteLine("coordinator: " + e.Data);
            if (ApiLine().Match(e.Data) is { Success: true } a) api.TrySetResult(new Uri(a.Groups[1].Value + "/"));
            if (ControlLine().Match(e.Data) is { Success: true } c) control.TrySetResult(new Uri(c.Groups[1].Value));
        };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine("coordinator: " + e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var exited = process.WaitForExitAsync();
        var ready = Task.WhenAll(api.Task, control.Task);
        if (await Task.WhenAny(ready, exited, Task.Delay(TimeSpan.FromMinutes(2))) != ready)
        {
            var why = process.HasExited ? $"the coordinator exited with {process.ExitCode} before it was ready" : "the coordinator was not ready within 2 minutes";
            await Stop(process, data);
            throw new InvalidOperationException(why);
        }
        return new LocalCoordinator(process, data, api.Task.Result, control.Task.Result, operatorKey);
    }

    private static async Task Stop(Process process, string dataDirectory)
    {
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
        process.Dispose();
        if (Directory.Exists(dataDirectory)) Directory.Delete(dataDirectory, recursive: true);
    }

    public async ValueTask DisposeAsync()
    {
        AppDomain.CurrentDomain.ProcessExit -= StopOnExit;
        await Stop(_process, _dataDirectory);
    }
}
