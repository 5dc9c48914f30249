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

    private sealed class SystemClock : EngineClock
    {
        public override long NowMs => Environment.TickCount64 + 1;

        public override DateTimeOffset WallNow => DateTimeOffset.UtcNow;
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

    public void Advance(TimeSpan by)
    {
        Interlocked.Add(ref _ms, (long)by.TotalMilliseconds);
        _wall += by;
    }
}
