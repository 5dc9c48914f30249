using System.Diagnostics;
using System.Security.Cryptography;

namespace Weft.Fuzz.Engine;

/// <summary>
/// Catches a hang: an input that runs longer than the limit is saved under hangs/ and the process
/// exits with code 3 (a spinning parser cannot be interrupted from outside), after the caller's
/// summary of what ran until then.
/// </summary>
public sealed class Watchdog : IDisposable
{
    private readonly TimeSpan _limit;
    private readonly string _outputDirectory;
    private readonly Func<string> _summarySoFar;
    private readonly Thread _thread;
    private readonly object _gate = new();
    private volatile bool _stopped;
    private string? _harness;
    private byte[]? _input;
    private long _startedAt;

    public Watchdog(TimeSpan limit, string outputDirectory, Func<string> summarySoFar)
    {
        _limit = limit;
        _outputDirectory = outputDirectory;
        _summarySoFar = summarySoFar;
        _thread = new Thread(Watch) { IsBackground = true, Name = "fuzz-watchdog" };
        _thread.Start();
    }

    public void Arm(string harness, byte[] input)
    {
        lock (_gate)
        {
            _harness = harness;
            _input = input;
            _startedAt = Stopwatch.GetTimestamp();
        }
    }

    public void Disarm()
    {
        lock (_gate) _input = null;
    }

    private void Watch()
    {
        while (!_stopped)
        {
            Thread.Sleep(100);
            lock (_gate)
            {
                if (_input is null || Stopwatch.GetElapsedTime(_startedAt) < _limit) continue;
                var folder = Path.Combine(_outputDirectory, "hangs", _harness!);
                Directory.CreateDirectory(folder);
                var path = Path.Combine(folder, Convert.ToHexStringLower(SHA256.HashData(_input))[..16]);
                File.WriteAllBytes(path, _input);
                Console.Error.WriteLine($"HANG in {_harness}: an input ran longer than {_limit.TotalSeconds} s; saved as {path}");
                Console.WriteLine(_summarySoFar());
                Console.Out.Flush();
                Environment.Exit(3);
            }
        }
    }

    public void Dispose() => _stopped = true;
}
