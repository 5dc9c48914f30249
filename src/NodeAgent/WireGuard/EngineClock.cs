namespace Weft.NodeAgent.WireGuard;

/// <summary>
/// The engine's notion of time: a monotonic millisecond counter for timers and keypair ages, and
/// wall time for TAI64N and "latest handshake". Injectable so that rekey and reject timing can be
/// tested without sleeping.
/// </summary>
public abstract class EngineClock
{
    public static readonly EngineClock System = new SystemClock();

    /// <summary>Monotonic milliseconds; never 0 (0 means "never" in timer fields).</summary>
    public abstract long NowMs { get; }

    public abstract DateTimeOffset WallNow { get; }

    /// <summary>
    /// Milliseconds the machine has spent asleep (suspended) since it booted: the time <see cref="NowMs"/> did
    /// not count. Grows only across a sleep, never with a step of the wall clock (an NTP correction).
    /// </summary>
    public abstract long SleptMs { get; }

    private sealed class SystemClock : EngineClock
    {
        public override long NowMs => Environment.TickCount64 + 1;

        public override DateTimeOffset WallNow => DateTimeOffset.UtcNow;

        public override long SleptMs => SuspendClocks.SleptMs();
    }
}

/// <summary>
/// Linux's two monotonic clocks: CLOCK_BOOTTIME counts the time suspended, CLOCK_MONOTONIC does not, so their
/// difference is the time asleep since boot. Elsewhere (or if either cannot be read) nothing is known: 0.
/// </summary>
public static class SuspendClocks
{
    public static long SleptMs() => TryRead(out var bootMs, out var monotonicMs) ? Math.Max(0, bootMs - monotonicMs) : 0;

    /// <summary>Both clocks, in milliseconds; false where they cannot be read (not Linux).</summary>
    public static bool TryRead(out long bootMs, out long monotonicMs)
    {
        (bootMs, monotonicMs) = (0, 0);
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            if (Net.Libc.clock_gettime(Net.Libc.CLOCK_BOOTTIME, out var boot) != 0 || Net.Libc.clock_gettime(Net.Libc.CLOCK_MONOTONIC, out var monotonic) != 0) return false;
            (bootMs, monotonicMs) = (boot.Milliseconds, monotonic.Milliseconds);
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }
}

/// <summary>A clock that moves only when told to.</summary>
public sealed class ManualClock(DateTimeOffset start) : EngineClock
{
    private long _ms = 1_000_000;
    private DateTimeOffset _wall = start;

    public ManualClock() : this(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)) { }

    public override long NowMs => Interlocked.Read(ref _ms);

    public override DateTimeOffset WallNow => _wall;

    public override long SleptMs => 0;

    public void Advance(TimeSpan by)
    {
        Interlocked.Add(ref _ms, (long)by.TotalMilliseconds);
        _wall += by;
    }
}
