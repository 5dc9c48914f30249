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

    /// <summary>
    /// A random pause between half of <paramref name="pause"/> and all of it: for what many agents retry at once
    /// (a relay that restarted drops all its clients together), so that they come back spread out, not in lockstep.
    /// </summary>
    public static TimeSpan Spread(TimeSpan pause, Random? random = null) =>
        TimeSpan.FromTicks(pause.Ticks / 2 + (long)((random ?? Random.Shared).NextDouble() * (pause.Ticks - pause.Ticks / 2)));
}
