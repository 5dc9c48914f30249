namespace Weft.Cluster.Tests.Support;

/// <summary>
/// The machine's clock, whose wall time the test steps, as a resumed VM or an NTP step would; its
/// monotonic timestamps (and the timers on them) stay the machine's.
/// </summary>
public sealed class SteppedWallClock : TimeProvider
{
    private long _offsetTicks;

    public override DateTimeOffset GetUtcNow() => TimeProvider.System.GetUtcNow() + TimeSpan.FromTicks(Interlocked.Read(ref _offsetTicks));

    public void Step(TimeSpan by) => Interlocked.Add(ref _offsetTicks, by.Ticks);
}
