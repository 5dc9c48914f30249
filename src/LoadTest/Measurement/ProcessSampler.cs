namespace Weft.LoadTest.Measurement;

/// <summary>CPU time and resident memory of a process on this machine, read from /proc.</summary>
public static class ProcessSampler
{
    private const double ClockTicksPerSecond = 100; // USER_HZ on Linux

    public sealed record Sample(long RssBytes, double CpuSeconds);

    /// <summary>The process's RSS and user+system CPU so far, or null once it is gone.</summary>
    public static Sample? Read(int processId)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{processId}/stat");
            // Fields after the command name (which may hold spaces) start after the last ')'.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            var cpu = (long.Parse(fields[11]) + long.Parse(fields[12])) / ClockTicksPerSecond;
            long rss = 0;
            foreach (var line in File.ReadLines($"/proc/{processId}/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    rss = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
            return new Sample(rss, cpu);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }
}
