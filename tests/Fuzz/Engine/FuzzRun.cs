using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace Weft.Fuzz.Engine;

public sealed record FuzzOptions(long ExecsPerHarness, int Seed, string OutputDirectory, string? RegressionDirectory, int MaxCorpus = 4096);

/// <summary>What one harness's run found. <see cref="Crashes"/> counts distinct crashes (exception type and throwing frame).</summary>
public sealed record HarnessReport(string Harness, long Execs, int Crashes, int Corpus, int Outcomes, int Edges, int Regressions, double SlowestMs, TimeSpan Elapsed, IReadOnlyList<string> CrashFiles);

/// <summary>
/// Fuzzes one harness: replays its saved regression inputs, then mutates its corpus for a fixed
/// number of executions. An input joins the corpus when it reaches code no input reached before
/// (edge coverage, when the assemblies are instrumented), or else when it ends with an outcome not
/// seen before.
/// Each crash is shrunk and saved, with its stack trace, under the output directory.
/// </summary>
public sealed partial class FuzzRun(Harness harness, FuzzOptions options, Watchdog watchdog, Coverage coverage)
{
    private readonly Random _random = new(options.Seed ^ StableHash(harness.Name));
    private readonly List<byte[]> _corpus = [];
    private readonly HashSet<string> _outcomes = [];
    private readonly Dictionary<string, string> _crashes = [];
    private TimeSpan _slowest;

    public HarnessReport Execute()
    {
        var clock = Stopwatch.StartNew();
        coverage.ForgetSeen();
        long execs = 0;
        var regressions = 0;
        foreach (var saved in RegressionInputs())
        {
            regressions++;
            execs++;
            Try(saved, out _, out _);
        }
        foreach (var seed in harness.Seeds())
        {
            execs++;
            if (!Try(seed, out var label, out _)) continue;
            _outcomes.Add(label);
            _corpus.Add(seed);
        }
        if (_corpus.Count == 0) _corpus.Add([]);

        // With instrumented assemblies new edges decide what is kept; without, new outcomes do.
        var guidedByCoverage = coverage.Edges > 0;
        var mutator = new Mutator(_random, harness.Tokens, harness.MaxInputBytes);
        byte[] Other() => _corpus[_random.Next(_corpus.Count)];
        while (execs < options.ExecsPerHarness)
        {
            var input = mutator.Mutate(Other(), Other);
            execs++;
            if (!Try(input, out var label, out var fresh)) continue;
            var newOutcome = _outcomes.Add(label);
            if (guidedByCoverage ? fresh : newOutcome)
            {
                if (_corpus.Count < options.MaxCorpus) _corpus.Add(input);
                else _corpus[_random.Next(_corpus.Count)] = input;
            }
        }
        return new HarnessReport(harness.Name, execs, _crashes.Count, _corpus.Count, _outcomes.Count, coverage.Edges, regressions, _slowest.TotalMilliseconds, clock.Elapsed, _crashes.Values.ToList());
    }

    /// <summary>Runs one input; false if it crashed (the crash is then shrunk and saved). <paramref name="fresh"/>: it reached new code.</summary>
    private bool Try(byte[] input, out string label, out bool fresh)
    {
        var failure = RunOnce(input, out label);
        fresh = coverage.TakeNew();
        if (failure is null) return true;
        var signature = Signature(failure);
        if (!_crashes.ContainsKey(signature)) _crashes[signature] = Save(Shrink(input, signature), failure);
        return false;
    }

    private Exception? RunOnce(byte[] input, out string label)
    {
        watchdog.Arm(harness.Name, input);
        coverage.Reset();
        var started = Stopwatch.GetTimestamp();
        try
        {
            label = Digits().Replace(Quoted().Replace(harness.Run(input), "'…'"), "#");
            return null;
        }
        catch (Exception e)
        {
            label = "";
            return e;
        }
        finally
        {
            watchdog.Disarm();
            var elapsed = Stopwatch.GetElapsedTime(started);
            if (elapsed > _slowest) _slowest = elapsed;
        }
    }

    /// <summary>Removes ever smaller chunks while the input still fails the same way.</summary>
    private byte[] Shrink(byte[] input, string signature)
    {
        var current = input;
        var attempts = 0;
        for (var chunk = Math.Max(1, current.Length / 2); chunk >= 1 && attempts < 4000; chunk /= 2)
        {
            for (var at = 0; at + chunk <= current.Length && attempts < 4000; attempts++)
            {
                var candidate = current[..at].Concat(current[(at + chunk)..]).ToArray();
                if (RunOnce(candidate, out _) is { } failure && Signature(failure) == signature) current = candidate;
                else at += chunk;
            }
        }
        return current;
    }

    private string Save(byte[] input, Exception failure)
    {
        var folder = Path.Combine(options.OutputDirectory, "crashes", harness.Name);
        Directory.CreateDirectory(folder);
        var name = Convert.ToHexStringLower(SHA256.HashData(input))[..16];
        var path = Path.Combine(folder, name);
        File.WriteAllBytes(path, input);
        File.WriteAllText(path + ".txt", failure.ToString());
        return path;
    }

    private IEnumerable<byte[]> RegressionInputs()
    {
        if (options.RegressionDirectory is not { } root) return [];
        var folder = Path.Combine(root, harness.Name);
        return Directory.Exists(folder)
            ? Directory.EnumerateFiles(folder).Where(f => !f.EndsWith(".txt", StringComparison.Ordinal)).Order(StringComparer.Ordinal).Select(File.ReadAllBytes)
            : [];
    }

    /// <summary>Exception type plus the frame that threw: one bug, however many inputs reach it.</summary>
    private static string Signature(Exception e)
    {
        var frame = new StackTrace(e, false).GetFrames().FirstOrDefault(f => f.GetMethod() is not null)?.GetMethod();
        return e.GetType().FullName + " at " + frame?.DeclaringType?.FullName + "." + frame?.Name;
    }

    private static int StableHash(string text) => text.Aggregate(17, (hash, c) => unchecked(hash * 31 + c));

    [GeneratedRegex("[0-9]+")]
    private static partial Regex Digits();

    /// <summary>Quoted input echoed in an error message: the same refusal whatever was quoted.</summary>
    [GeneratedRegex("'[^']*'|\"[^\"]*\"")]
    private static partial Regex Quoted();
}
