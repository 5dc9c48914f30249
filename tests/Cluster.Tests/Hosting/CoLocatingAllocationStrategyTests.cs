using Akka.Actor;
using Weft.Cluster.Hosting;

namespace Weft.Cluster.Tests.Hosting;

public class CoLocatingAllocationStrategyTests
{
    private static readonly Address[] Nodes =
    [
        new("akka.ssl.tcp", "weft", "127.0.0.1", 4351),
        new("akka.ssl.tcp", "weft", "127.0.0.1", 4352),
        new("akka.ssl.tcp", "weft", "127.0.0.1", 4353),
    ];

    private static readonly string[] Shards = Enumerable.Range(0, 100).Select(i => i.ToString()).ToArray();

    [Fact]
    public void Every_region_type_picks_the_same_home_for_a_shard_whatever_order_it_sees_the_nodes_in()
    {
        foreach (var shard in Shards)
        {
            var home = CoLocatingAllocationStrategy.HomeOf(shard, Nodes);
            Assert.Equal(home, CoLocatingAllocationStrategy.HomeOf(shard, Nodes.Reverse().ToList()));
            Assert.Equal(home, CoLocatingAllocationStrategy.HomeOf(shard, [Nodes[1], Nodes[2], Nodes[0]]));
        }
    }

    [Fact]
    public void The_shards_spread_over_every_node()
    {
        var perNode = Shards.GroupBy(s => CoLocatingAllocationStrategy.HomeOf(s, Nodes)).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(3, perNode.Count);
        // Rendezvous hashing is balanced on average (33 each); these three addresses give no node fewer than 20.
        Assert.All(perNode.Values, count => Assert.InRange(count, 20, 50));
    }

    [Fact]
    public void Losing_a_node_moves_only_its_shards_and_its_return_brings_exactly_those_back()
    {
        var homes = Shards.ToDictionary(s => s, s => CoLocatingAllocationStrategy.HomeOf(s, Nodes));
        var survivors = new[] { Nodes[0], Nodes[2] };
        foreach (var shard in Shards)
        {
            var after = CoLocatingAllocationStrategy.HomeOf(shard, survivors);
            if (homes[shard] != Nodes[1]) Assert.Equal(homes[shard], after);
            else Assert.Contains(after, survivors);
        }

        // Back with three nodes: the shards that sat on the survivors while node 2 was away are the misplaced ones.
        var duringOutage = survivors.Select(n => (Node: n, Shards: Shards.Where(s => CoLocatingAllocationStrategy.HomeOf(s, survivors) == n)));
        var misplaced = CoLocatingAllocationStrategy.Misplaced(duringOutage, Nodes, limit: 1_000);
        Assert.Equal(Shards.Where(s => homes[s] == Nodes[1]).Order(StringComparer.Ordinal), misplaced);
    }

    [Fact]
    public void A_rebalance_round_moves_at_most_its_limit_and_nothing_that_is_home()
    {
        var allOnOne = new[] { (Node: Nodes[0], Shards: (IEnumerable<string>)Shards) };
        var misplaced = CoLocatingAllocationStrategy.Misplaced(allOnOne, Nodes, limit: 10);
        Assert.Equal(10, misplaced.Count);
        Assert.All(misplaced, s => Assert.NotEqual(Nodes[0], CoLocatingAllocationStrategy.HomeOf(s, Nodes)));

        var atHome = Nodes.Select(n => (Node: n, Shards: Shards.Where(s => CoLocatingAllocationStrategy.HomeOf(s, Nodes) == n)));
        Assert.Empty(CoLocatingAllocationStrategy.Misplaced(atHome, Nodes, limit: 10));
    }

    [Fact]
    public void A_shard_with_no_node_to_go_to_is_a_clear_error()
    {
        Assert.Throws<ArgumentException>(() => CoLocatingAllocationStrategy.HomeOf("1", []));
    }
}
