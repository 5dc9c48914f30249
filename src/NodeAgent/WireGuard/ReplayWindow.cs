namespace Weft.NodeAgent.WireGuard;

/// <summary>
/// The anti-replay filter of one keypair (RFC 6479 style, wireguard-go replay.go): a ring of
/// 128 × 64-bit blocks, so counters up to 8128 behind the newest are still accepted once each.
/// Call only after the packet authenticated: a forged packet must never move the window.
/// </summary>
public sealed class ReplayWindow
{
    private const int BlockBitLog = 6;
    private const int BlockBits = 1 << BlockBitLog;
    private const int RingBlocks = 1 << 7;
    private const ulong WindowSize = (RingBlocks - 1) * BlockBits;
    private const ulong BlockMask = RingBlocks - 1;
    private const ulong BitMask = BlockBits - 1;

    private readonly ulong[] _ring = new ulong[RingBlocks];
    private ulong _last;

    public static int Size => (int)WindowSize;

    /// <summary>True the first time a counter below <paramref name="limit"/> is seen within the window; marks it seen.</summary>
    public bool Accept(ulong counter, ulong limit = Constants.RejectAfterMessages)
    {
        if (counter >= limit) return false;
        lock (_ring)
        {
            var indexBlock = counter >> BlockBitLog;
            if (counter > _last)
            {
                // Move the window forward, clearing the blocks it passes (at most the whole ring).
                var current = _last >> BlockBitLog;
                var diff = Math.Min(indexBlock - current, (ulong)RingBlocks);
                for (var i = current + 1; i <= current + diff; i++) _ring[i & BlockMask] = 0;
                _last = counter;
            }
            else if (_last - counter > WindowSize)
            {
                return false; // too far behind
            }

            indexBlock &= BlockMask;
            var bit = 1UL << (int)(counter & BitMask);
            var old = _ring[indexBlock];
            _ring[indexBlock] = old | bit;
            return (old & bit) == 0;
        }
    }
}
