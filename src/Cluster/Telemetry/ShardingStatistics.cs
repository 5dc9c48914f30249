using System.Diagnostics.Metrics;
using Akka.Actor;
using Akka.Cluster.Sharding;

namespace Weft.Cluster.Telemetry;

/// <summary>Shards and entities of one entity type in one place (a node, or the cluster).</summary>
public sealed record ShardCounts(string EntityType, int Shards, int Entities);

/// <summary>
/// Counts the shards and entities that sharding runs, per entity type: on this node (asked of the
/// local shard regions every <see cref="Interval"/> and exported as the gauges <c>weft.sharding.shards</c>
/// and <c>weft.sharding.entities</c>), and per node across the cluster (for the console's cluster view).
/// </summary>
public sealed class ShardingStatistics : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(3);
    // One meter per node (tests run several in one process); it goes with the node.
    private readonly Meter _meter = new(CoordinatorMetrics.MeterName);

    private readonly ActorSystem _system;
    private volatile IReadOnlyList<ShardCounts> _local = [];

    public ShardingStatistics(ActorSystem system)
    {
        _system = system;
        _meter.CreateObservableGauge("weft.sharding.shards", () => _local.Select(c => new Measurement<int>(c.Shards, CoordinatorMetrics.EntityType(c.EntityType))),
            "{shard}", "Shards hosted on this node, by entity type");
        _meter.CreateObservableGauge("weft.sharding.entities", () => _local.Select(c => new Measurement<int>(c.Entities, CoordinatorMetrics.EntityType(c.EntityType))),
            "{entity}", "Entities running on this node, by entity type");
    }

    /// <summary>What this node hosted at the last look.</summary>
    public IReadOnlyList<ShardCounts> Local => _local;

    /// <summary>Asks this node's shard regions now.</summary>
    public async Task<IReadOnlyList<ShardCounts>> CountLocalAsync(CancellationToken cancellation)
    {
        var sharding = ClusterSharding.Get(_system);
        var counts = new List<ShardCounts>();
        foreach (var type in sharding.ShardTypeNames.Order(StringComparer.Ordinal))
        {
            try
            {
                var state = await sharding.ShardRegion(type).Ask<CurrentShardRegionState>(GetShardRegionState.Instance, AskTimeout, cancellation);
                counts.Add(new ShardCounts(type, state.Shards.Count, state.Shards.Sum(s => s.EntityIds.Count)));
            }
            catch (AskTimeoutException)
            {
                // A region busy with a rebalance answers later; the next look counts it.
            }
        }
        return _local = counts;
    }

    /// <summary>Shards and entities per node address, from every node's shard regions (sharding's own cluster-wide statistics).</summary>
    public async Task<IReadOnlyDictionary<Address, List<ShardCounts>>> CountClusterAsync(CancellationToken cancellation)
    {
        var sharding = ClusterSharding.Get(_system);
        var byNode = new Dictionary<Address, List<ShardCounts>>();
        foreach (var type in sharding.ShardTypeNames.Order(StringComparer.Ordinal))
        {
            try
            {
                var stats = await sharding.ShardRegion(type).Ask<ClusterShardingStats>(new GetClusterShardingStats(AskTimeout), AskTimeout + TimeSpan.FromSeconds(1), cancellation);
                foreach (var (address, region) in stats.Regions)
                {
                    if (!byNode.TryGetValue(address, out var list)) byNode[address] = list = [];
                    list.Add(new ShardCounts(type, region.Stats.Count, region.Stats.Values.Sum()));
                }
            }
            catch (AskTimeoutException)
            {
            }
        }
        return byNode;
    }

    public override void Dispose()
    {
        _meter.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(Interval);
        do
        {
            try
            {
                await CountLocalAsync(stopping);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Sharding not started yet, or the system is stopping: the gauges keep the last counts.
            }
        } while (await timer.WaitForNextTickAsync(stopping));
    }
}
