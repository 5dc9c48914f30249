using Akka.Cluster.Sharding;
using Akka.Util;

namespace Weft.Cluster.Tailnets;

/// <summary>
/// Keeps a tailnet's devices next to their tailnet. A new device gets an id in the shard number of
/// its tailnet, and both regions place a shard number on the same node
/// (<see cref="Hosting.CoLocatingAllocationStrategy"/>). So the tailnet's deltas to its devices'
/// entities, and their endpoint reports to it, are messages within one node; only the hop from a
/// device's entity to its agent's session may cross the network. Devices registered before keep
/// their ids and work as before, placed wherever their own shard number is.
/// </summary>
public sealed class TailnetAffinity(int numberOfShards)
{
    /// <summary>Ids tried before one outside the tailnet's shard is taken (never reached: 1 in 100 fits).</summary>
    private const int MaxAttempts = 10_000;

    public int NumberOfShards { get; } = numberOfShards > 0 ? numberOfShards
        : throw new ArgumentOutOfRangeException(nameof(numberOfShards), numberOfShards, "the number of shards must be positive");

    /// <summary>The shard an entity id goes to, as the regions' <see cref="HashCodeMessageExtractor"/> computes it.</summary>
    public string ShardOf(string entityId) =>
        (Math.Abs(MurmurHash.StringHash(entityId)) % NumberOfShards).ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>A new random device id (<c>dev_</c> and 12 base32 characters) in the shard of <paramref name="tailnetId"/>.</summary>
    public string NewDeviceId(string tailnetId)
    {
        var shard = ShardOf(tailnetId);
        for (var attempt = 1; ; attempt++)
        {
            var id = Identifiers.DevicePrefix + Identifiers.RandomBase32(12);
            // (An id whose hash is int.MinValue has no shard: the extractor's Math.Abs would throw.)
            if (MurmurHash.StringHash(id) == int.MinValue) continue;
            if (attempt >= MaxAttempts || ShardOf(id) == shard) return id;
        }
    }
}
