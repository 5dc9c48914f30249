using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace Weft.Cluster.Tests.Support;

/// <summary>
/// A coordinator running as its own OS process (<c>dotnet weft.dll</c>), as an operator runs it.
/// Killed with its process tree when disposed, whatever the test outcome.
/// </summary>
public sealed partial class CoordinatorProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource<Uri> _api = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<Uri> _control = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private CoordinatorProcess(Process process, int akkaPort)
    {
        _process = process;
        AkkaPort = akkaPort;
    }

    public int AkkaPort { get; }

    public string Output { get { lock (_output) return _output.ToString(); } }

    [GeneratedRegex(@"admin API : (http://\S+?)/api/v1")]
    private static partial Regex BannerAddress();

    [GeneratedRegex(@"control   : (http://\S+?/)\s")]
    private static partial Regex BannerControlAddress();

    /// <summary>The control-protocol address agents dial, from the ready banner.</summary>
    public Task<Uri> ControlAddress => _control.Task;

    public static CoordinatorProcess Start(int akkaPort, IEnumerable<string> seeds, IDictionary<string, string> environment, params string[] extraArgs)
    {
        var weft = Path.Combine(AppContext.BaseDirectory, "weft.dll");
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        foreach (var arg in new[] { weft, "--api-listen", "http://127.0.0.1:0", "--control-listen", "http://127.0.0.1:0", "--akka-port", akkaPort.ToString() }) info.ArgumentList.Add(arg);
        foreach (var seed in seeds) { info.ArgumentList.Add("--seed"); info.ArgumentList.Add(seed); }
        foreach (var arg in extraArgs) info.ArgumentList.Add(arg);
        info.Environment["Weft__BootstrapOperatorKey"] = TestCoordinator.OperatorKey;
        info.Environment["Serilog__MinimumLevel__Default"] = "Warning";
        foreach (var (key, value) in environment) info.Environment[key] = value;

        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start dotnet weft.dll");
        var node = new CoordinatorProcess(process, akkaPort);
        process.OutputDataReceived += (_, e) => node.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => node.OnLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        process.EnableRaisingEvents = true;
        process.Exited += (_, _) =>
        {
            var exited = new InvalidOperationException($"coordinator exited with {process.ExitCode}:\n{node.Output}");
            node._api.TrySetException(exited);
            node._control.TrySetException(exited);
        };
        return node;
    }

    /// <summary>The admin API address, once the node printed its ready banner.</summary>
    public async Task<Uri> WhenReady(TimeSpan timeout)
    {
        try
        {
            return await _api.Task.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"coordinator on akka port {AkkaPort} not ready after {timeout}:\n{Output}");
        }
    }

    public static int FreeTcpPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private void OnLine(string? line)
    {
        if (line is null) return;
        lock (_output) _output.AppendLine(line);
        var match = BannerAddress().Match(line);
        if (match.Success) _api.TrySetResult(new Uri(match.Groups[1].Value + "/"));
        var control = BannerControlAddress().Match(line);
        if (control.Success) _control.TrySetResult(new Uri(control.Groups[1].Value));
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
