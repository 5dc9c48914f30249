using System.Net;

namespace Weft.NodeAgent.WireGuard;

/// <summary>
/// A token bucket per source IP for handshake messages under load (wireguard-go ratelimiter.go):
/// 20 packets per second with a burst of 5. Idle sources are forgotten after a second.
/// </summary>
public sealed class RateLimiter(EngineClock clock)
{
    private const long PacketCostMs = 1000 / Constants.RateLimitPacketsPerSecond;
    private const long MaxTokensMs = PacketCostMs * Constants.RateLimitBurst;

    private readonly Dictionary<UInt128, Bucket> _buckets = new();
    private long _lastSweepMs;

    private sealed class Bucket
    {
        public long LastMs;
        public long Tokens;
    }

    public bool Allow(IPAddress source)
    {
        Span<byte> bytes = stackalloc byte[16];
        var mapped = source.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? source.MapToIPv6() : source;
        mapped.TryWriteBytes(bytes, out _);
        var key = System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(bytes);
        var now = clock.NowMs;
        lock (_buckets)
        {
            if (now - _lastSweepMs > 1000)
            {
                foreach (var (k, b) in _buckets.Where(kv => now - kv.Value.LastMs > 1000).ToList()) _buckets.Remove(k);
                _lastSweepMs = now;
            }
            if (!_buckets.TryGetValue(key, out var bucket))
            {
                _buckets[key] = new Bucket { LastMs = now, Tokens = MaxTokensMs - PacketCostMs };
                return true;
            }
            bucket.Tokens = Math.Min(MaxTokensMs, bucket.Tokens + (now - bucket.LastMs));
            bucket.LastMs = now;
            if (bucket.Tokens < PacketCostMs) return false;
            bucket.Tokens -= PacketCostMs;
            return true;
        }
    }
}
