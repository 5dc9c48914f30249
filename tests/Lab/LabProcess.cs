using System.Diagnostics;
using System.Text;

namespace Weft.Lab;

/// <summary>A process the lab started; killed with its children when the lab is disposed.</summary>
public sealed class LabProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly object _lock = new();
    private readonly TaskCompletionSource _outputClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _errorClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    /// <summary>Set once killed and released: a Process that is disposed can no longer say whether it exited.</summary>
    private volatile bool _disposed;

    internal LabProcess(string description, ProcessStartInfo info)
    {
        Description = description;
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.UseShellExecute = false;
        _process = Process.Start(info) ?? throw new LabException($"could not start {description}");
        _process.OutputDataReceived += (_, e) => Append(e.Data, _outputClosed);
        _process.ErrorDataReceived += (_, e) => Append(e.Data, _errorClosed);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Description { get; }

    public bool HasExited => _disposed || _process.HasExited;

    /// <summary>
    /// Waits for the process to end by itself; its exit code, or null if it still runs after <paramref name="timeout"/>.
    /// Once it has ended, <see cref="Output"/> holds everything it printed: the process can exit before its last lines
    /// have been read from the pipes, so this also waits (briefly) for both pipes to close.
    /// </summary>
    public int? WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout)) return null;
        Task.WaitAll([_outputClosed.Task, _errorClosed.Task], TimeSpan.FromSeconds(5)); // a child that kept the pipes open would hold them longer
        return _process.ExitCode;
    }

    public string Output
    {
        get { lock (_lock) return _output.ToString(); }
    }

    private void Append(string? line, TaskCompletionSource closed)
    {
        if (line is null)
        {
            closed.TrySetResult(); // end of that pipe
            return;
        }
        lock (_lock) _output.AppendLine(line);
    }

    /// <summary>Waits until the process printed <paramref name="text"/>; fails with its output if it exits or times out first.</summary>
    public void WaitForOutput(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (Output.Contains(text, StringComparison.Ordinal)) return;
            if (_process.HasExited && WaitForExit(TimeSpan.Zero) is { } code && !Output.Contains(text, StringComparison.Ordinal))
                throw new LabException($"{Description} exited ({code}) before printing '{text}':\n{Output}");
            Thread.Sleep(50);
        }
        throw new LabException($"{Description} did not print '{text}' within {timeout}:\n{Output}");
    }

    /// <summary>
    /// Asks the process to stop (SIGTERM, or the given signal), then kills it if it has not stopped after
    /// <paramref name="grace"/>. A process already stopped (or killed) is left alone, so the lab's own
    /// disposal can stop again what a test stopped.
    /// </summary>
    public void Stop(TimeSpan grace, string signal = "TERM")
    {
        if (HasExited) return;
        try
        {
            Lab.Run("kill", "-" + signal, _process.Id.ToString());
        }
        catch (LabException) when (_process.HasExited)
        {
            return; // it ended on its own meanwhile
        }
        if (!_process.WaitForExit(grace)) Dispose();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}

public sealed class LabException(string message) : Exception(message);
