namespace Weft.NodeAgent.Net;

/// <summary>How long the agent's loops wait before trying again after failures in a row.</summary>
public static class RetryPause
{
    /// <summary>
    /// <paramref name="first"/>, doubled for each of <paramref name="failures"/>, and never longer than
    /// <paramref name="longest"/>: a failure that lasts is retried at a steady pace instead of in a spin.
    /// </summary>
    public static TimeSpan Doubling(TimeSpan first, TimeSpan longest, int failures) =>
        TimeSpan.FromTicks(Math.Min(longest.Ticks, first.Ticks << Math.Clamp(failures, 0, 16)));
}
