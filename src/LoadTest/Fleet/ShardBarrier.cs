using Weft.LoadTest.Scenarios;

namespace Weft.LoadTest.Fleet;

/// <summary>
/// Keeps the shards of one run in step through a folder they all see (<c>--sync-dir</c>): at each
/// point (tailnets made, every node joined, each phase's start) a shard leaves a file named for the
/// point and its number, and goes on once every shard's file for that point is there. So the fleet
/// joins as one storm, the coordinators' memory is sampled with every shard's nodes connected, and
/// the phases (and a chaos command run by shard 1) line up.
/// </summary>
public sealed class ShardBarrier(string directory, Shard shard, TextWriter log)
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);
    private bool _arrivedBefore;

    /// <summary>How long a shard waits for the others at one point before it gives up on the run.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(45);

    public Shard Shard => shard;

    public async Task ArriveAsync(string point, CancellationToken cancel = default)
    {
        if (point.Any(c => !char.IsAsciiLetterOrDigit(c) && c != '-')) throw new ArgumentException($"'{point}' is not a barrier name (letters, digits and '-')", nameof(point));
        Directory.CreateDirectory(directory);
        if (!_arrivedBefore && Directory.EnumerateFiles(directory, $"*.{shard.Number}").FirstOrDefault() is { } stale)
            throw new InvalidOperationException($"{directory} already holds {Path.GetFileName(stale)} from an earlier run of shard {shard}: give each run a fresh --sync-dir");
        _arrivedBefore = true;
        WriteWhole(FileOf(point, shard.Number), DateTimeOffset.UtcNow.ToString("O"));
        var deadline = DateTime.UtcNow + Timeout;
        var reported = false;
        while (true)
        {
            if (Directory.EnumerateFiles(directory, FailedPoint + ".*").FirstOrDefault() is { } failed)
                throw new InvalidOperationException($"shard {Path.GetExtension(failed).TrimStart('.')}/{shard.Count} failed, so this run cannot go on: {File.ReadAllText(failed)}");
            var missing = Enumerable.Range(1, shard.Count).Where(n => !File.Exists(FileOf(point, n))).ToList();
            if (missing.Count == 0) return;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"shard {shard} waited {Timeout} at '{point}' for shard(s) {string.Join(", ", missing)} of {shard.Count} (folder {directory})");
            if (!reported)
            {
                log.WriteLine($"shard {shard}: at '{point}', waiting for shard(s) {string.Join(", ", missing)}");
                reported = true;
            }
            await Task.Delay(Poll, cancel);
        }
    }

    /// <summary>Tells the other shards that this one failed, so that they stop waiting for it.</summary>
    public void Abandon(string reason)
    {
        try
        {
            Directory.CreateDirectory(directory);
            WriteWhole(FileOf(FailedPoint, shard.Number), reason);
        }
        catch (IOException e)
        {
            log.WriteLine($"shard {shard}: could not tell the others it failed ({e.Message})");
        }
    }

    private const string FailedPoint = "failed";

    /// <summary>
    /// Writes a file that the other shards see whole or not at all: written under a name no shard
    /// looks for, then renamed (one step on a POSIX file system). Written in place, a shard polling
    /// between the create and the write read an empty failure reason.
    /// </summary>
    private static void WriteWhole(string path, string text)
    {
        var partial = Path.Combine(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}.{Environment.ProcessId}.partial");
        File.WriteAllText(partial, text);
        File.Move(partial, path, overwrite: true);
    }

    private string FileOf(string point, int number) => Path.Combine(directory, $"{point}.{number}");
}
