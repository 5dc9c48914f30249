using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Weft.ClusterLab;

/// <summary>
/// A coordinator running as its own OS process (<c>dotnet weft.dll</c>), as an operator runs it. Its
/// ports are fixed when it is made, so a restart comes back at the same addresses (agents and the
/// other nodes find it again). It can be killed (<c>kill -9</c>), stopped gracefully (SIGTERM),
/// paused and resumed (SIGSTOP, SIGCONT) and started again; the process is killed when the node is
/// disposed, whatever the test's outcome.
/// </summary>
public sealed class CoordinatorNode : IAsyncDisposable
{
    private readonly IReadOnlyList<string> _seeds;
    private readonly IReadOnlyDictionary<string, string> _environment;
    private readonly StringBuilder _output = new();
    private Process? _process;
    private TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public CoordinatorNode(string name, IReadOnlyList<string> seeds, IReadOnlyDictionary<string, string> environment, int? akkaPort = null)
    {
        Name = name;
        _seeds = seeds;
        _environment = environment;
        AkkaPort = akkaPort ?? FreeTcpPort();
        ApiPort = FreeTcpPort();
        ControlPort = FreeTcpPort();
    }

    public string Name { get; }

    public int AkkaPort { get; }

    public int ApiPort { get; }

    public int ControlPort { get; }

    public Uri Api => new($"http://127.0.0.1:{ApiPort}/");

    public Uri Control => new($"http://127.0.0.1:{ControlPort}/");

    /// <summary>The node's cluster address as members list it.</summary>
    public string Address => $"akka.ssl.tcp://weft@127.0.0.1:{AkkaPort}";

    public bool Running => _process is { HasExited: false };

    public int? ExitCode => _process is { HasExited: true } exited ? exited.ExitCode : null;

    /// <summary>Everything every incarnation of the node printed.</summary>
    public string Output { get { lock (_output) return _output.ToString(); } }

    public static string WeftDll => Path.Combine(AppContext.BaseDirectory, "weft.dll");

    public void Start()
    {
        if (Running) throw new InvalidOperationException($"{Name} is already running");
        _process?.Dispose();
        _ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        foreach (var arg in new[] { WeftDll, "--api-listen", Api.ToString().TrimEnd('/'), "--control-listen", Control.ToString().TrimEnd('/'), "--akka-port", AkkaPort.ToString() })
            info.ArgumentList.Add(arg);
        foreach (var seed in _seeds)
        {
            info.ArgumentList.Add("--seed");
            info.ArgumentList.Add(seed);
        }
        info.Environment["Weft__BootstrapOperatorKey"] = LabKeys.OperatorKey;
        // Several nodes share this host, with ports picked in advance: relays would take ports of their
        // own and could collide with them. These clusters run no relay (agents connect directly).
        info.Environment["Weft__Relay__Embedded"] = "false";
        info.Environment["Weft__Telemetry__Canary"] = "false"; // the lab counts sessions and devices exactly
        // WEFT_LAB_LOG=Information (or Debug) shows more of what the nodes do when a lab run needs a closer look.
        info.Environment["Serilog__MinimumLevel__Default"] = Environment.GetEnvironmentVariable("WEFT_LAB_LOG") ?? "Warning";
        foreach (var (key, value) in _environment) info.Environment[key] = value;

        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start dotnet weft.dll");
        var ready = _ready;
        process.OutputDataReceived += (_, e) => OnLine(e.Data, ready);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data, ready);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        process.EnableRaisingEvents = true;
        process.Exited += (_, _) => ready.TrySetException(new InvalidOperationException($"{Name} exited with {process.ExitCode}:\n{Output}"));
        _process = process;
        Append($"--- {Name} started (pid {process.Id}) at {DateTime.UtcNow:HH:mm:ss.fff}");
    }

    /// <summary>Waits for the node's ready banner (it is a member, listening, and holds the keys).</summary>
    public async Task WhenReady(TimeSpan timeout)
    {
        try
        {
            await _ready.Task.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{Name} not ready after {timeout}:\n{Output}");
        }
    }

    /// <summary><c>kill -9</c>: no goodbye, no handover.</summary>
    public async Task Kill()
    {
        if (!Running) return;
        Append($"--- {Name} killed (SIGKILL) at {DateTime.UtcNow:HH:mm:ss.fff}");
        Signals.Send(_process!.Id, Signals.Kill);
        await _process.WaitForExitAsync();
    }

    /// <summary>SIGTERM, as systemd or Kubernetes stop a node, and waits for the process to end on its own.</summary>
    /// <returns>How long the graceful shutdown took.</returns>
    public async Task<TimeSpan> Terminate(TimeSpan timeout)
    {
        if (!Running) return TimeSpan.Zero;
        var watch = Stopwatch.StartNew();
        Append($"--- {Name} asked to stop (SIGTERM) at {DateTime.UtcNow:HH:mm:ss.fff}");
        Signals.Send(_process!.Id, Signals.Terminate);
        try
        {
            await _process.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            await Kill();
            throw new TimeoutException($"{Name} did not stop within {timeout} of SIGTERM:\n{Output}");
        }
        return watch.Elapsed;
    }

    /// <summary>SIGSTOP: the process freezes, sockets open, as a node that hangs or is cut off.</summary>
    public void Pause()
    {
        Append($"--- {Name} paused (SIGSTOP) at {DateTime.UtcNow:HH:mm:ss.fff}");
        Signals.Send(_process!.Id, Signals.Stop);
    }

    public void Resume()
    {
        Append($"--- {Name} resumed (SIGCONT) at {DateTime.UtcNow:HH:mm:ss.fff}");
        Signals.Send(_process!.Id, Signals.Continue);
    }

    private static readonly HashSet<int> HandedOut = [];

    /// <summary>
    /// A port free now, and never one this process handed out before: the kernel may give a port it
    /// just released to the next ask, and a node given the same port for two listeners fails to start.
    /// </summary>
    public static int FreeTcpPort()
    {
        while (true)
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            lock (HandedOut)
                if (HandedOut.Add(port)) return port;
        }
    }

    private void OnLine(string? line, TaskCompletionSource ready)
    {
        if (line is null) return;
        Append(line);
        if (line.Contains("Weft coordinator is up.", StringComparison.Ordinal)) ready.TrySetResult();
    }

    private void Append(string line)
    {
        lock (_output) _output.AppendLine(line);
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { } process)
        {
            if (!process.HasExited)
            {
                try { Signals.Send(process.Id, Signals.Continue); } catch (InvalidOperationException) { }
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
            process.Dispose();
        }
    }
}
