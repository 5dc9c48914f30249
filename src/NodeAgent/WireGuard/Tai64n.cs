using System.Buffers.Binary;

namespace Weft.NodeAgent.WireGuard;

/// <summary>
/// TAI64N timestamps for handshake initiations: 8 bytes of seconds (2^62 + 10 s TAI offset + Unix
/// seconds) and 4 bytes of nanoseconds, big-endian. Like wireguard-go, the low 24 bits of the
/// nanoseconds are cleared so the timestamp does not leak precise time (≈16.8 ms granularity).
/// </summary>
public static class Tai64n
{
    public const int Size = 12;
    private const ulong Base = 0x400000000000000A;
    private const uint WhitenerMask = 0x1000000 - 1;

    public static void Write(DateTimeOffset time, Span<byte> destination)
    {
        var unixSeconds = time.ToUnixTimeSeconds();
        var nanos = (uint)((time.UtcTicks % TimeSpan.TicksPerSecond) * 100) & ~WhitenerMask;
        BinaryPrimitives.WriteUInt64BigEndian(destination, Base + (ulong)unixSeconds);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], nanos);
    }

    /// <summary>True if <paramref name="candidate"/> is strictly after <paramref name="previous"/> (byte-wise, as wireguard-go compares).</summary>
    public static bool IsAfter(ReadOnlySpan<byte> candidate, ReadOnlySpan<byte> previous) =>
        candidate[..Size].SequenceCompareTo(previous[..Size]) > 0;
}
