using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster.Sharding;

namespace Weft.Cluster.Hosting;

/// <summary>
/// Places shard number k of every shard region that uses it on the same node, so that entities that
/// share a shard number work together without crossing the network. Weft gives a tailnet's devices
/// the shard number of their tailnet (<see cref="Tailnets.TailnetAffinity"/>), so a tailnet's
/// fan-out to its devices' entities, and their reports back, stay on one node.
/// <para>
/// The home of a shard is chosen by rendezvous hashing: of the nodes that are up, the one whose
/// address hashes highest together with the shard id. Every region type picks the same node for the
/// same shard id; when a node is lost only its shards move (each to its next-best node), and when it
/// comes back, a rebalance returns them, a few per round, once membership has been steady for
/// <see cref="SettleTime"/>. The hash is stable across processes, so a
/// shard coordinator that moves to another node keeps the same preferences.
/// </para>
/// <para>
/// Sharding keeps each entity single either way: the strategy only chooses where a shard goes. While
/// regions see different members (a node joining or leaving), a tailnet's shard and its devices'
/// may sit apart for a while; the next rebalance brings them together.
/// </para>
/// </summary>
public sealed class CoLocatingAllocationStrategy(ActorSystem system, int rebalanceLimit = CoLocatingAllocationStrategy.DefaultRebalanceLimit)
    : IShardAllocationStrategy
{
    /// <summary>Shards moved back to their home per rebalance round (sharding's own default strategy moves up to 10).</summary>
    public const int DefaultRebalanceLimit = 10;

    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(system);

    public Task<IActorRef> AllocateShard(IActorRef requester, string shardId, IImmutableDictionary<IActorRef, IImmutableList<string>> currentShardAllocations)
    {
        var candidates = Candidates(currentShardAllocations.Keys);
        var home = candidates.Count == 0 ? requester : HomeOf(shardId, candidates);
        return Task.FromResult(home);
    }

    public Task<IImmutableSet<string>> Rebalance(IImmutableDictionary<IActorRef, IImmutableList<string>> currentShardAllocations, IImmutableSet<string> rebalanceInProgress)
    {
        // One round at a time, and only on a cluster that has settled: moving shards home while a node
        // is joining, leaving, unreachable or just gone stacks a hand-off on a failover.
        if (rebalanceInProgress.Count > 0 || !Settled()) return Task.FromResult<IImmutableSet<string>>(ImmutableHashSet<string>.Empty);
        var candidates = Candidates(currentShardAllocations.Keys);
        if (candidates.Count < 2) return Task.FromResult<IImmutableSet<string>>(ImmutableHashSet<string>.Empty);
        var misplaced = Misplaced(currentShardAllocations.Select(kv => (Node: NodeOf(kv.Key), Shards: (IEnumerable<string>)kv.Value)),
            candidates.Select(c => c.Node).ToList(), rebalanceLimit);
        return Task.FromResult<IImmutableSet<string>>(misplaced.ToImmutableHashSet());
    }

    /// <summary>The regions on members that are up and reachable, with their nodes' addresses.</summary>
    private List<(IActorRef Region, Address Node)> Candidates(IEnumerable<IActorRef> regions)
    {
        var state = _cluster.State;
        var unreachable = state.Unreachable.Select(m => m.Address).ToHashSet();
        var up = state.Members.Where(m => m.Status == Akka.Cluster.MemberStatus.Up && !unreachable.Contains(m.Address)).Select(m => m.Address).ToHashSet();
        return regions.Select(r => (Region: r, Node: NodeOf(r))).Where(c => up.Contains(c.Node)).ToList();
    }

    /// <summary>How long membership must stay the same (every member up and reachable) before shards move home.</summary>
    public static readonly TimeSpan SettleTime = TimeSpan.FromSeconds(30);

    private string _membership = "";
    private DateTime _membershipSince = DateTime.UtcNow;

    /// <summary>Whether every member is up and reachable, and has been, with the same members, for <see cref="SettleTime"/>.</summary>
    private bool Settled()
    {
        var state = _cluster.State;
        var membership = string.Join(",", state.Members.Select(m => m.UniqueAddress + ":" + m.Status).Order(StringComparer.Ordinal))
            + "|" + string.Join(",", state.Unreachable.Select(m => m.UniqueAddress.ToString()).Order(StringComparer.Ordinal));
        if (membership != _membership)
        {
            _membership = membership;
            _membershipSince = DateTime.UtcNow;
        }
        return state.Unreachable.Count == 0 && state.Members.All(m => m.Status == Akka.Cluster.MemberStatus.Up)
            && DateTime.UtcNow - _membershipSince >= SettleTime;
    }

    /// <summary>A region's node: the coordinator's own region has a local path, without an address.</summary>
    private Address NodeOf(IActorRef region) => region.Path.Address.HasGlobalScope ? region.Path.Address : _cluster.SelfAddress;

    private static IActorRef HomeOf(string shardId, List<(IActorRef Region, Address Node)> candidates)
    {
        var home = HomeOf(shardId, candidates.Select(c => c.Node).ToList());
        return candidates.First(c => c.Node == home).Region;
    }

    /// <summary>The node that shard <paramref name="shardId"/> belongs on, of <paramref name="nodes"/> (rendezvous hashing).</summary>
    public static Address HomeOf(string shardId, IReadOnlyCollection<Address> nodes)
    {
        if (nodes.Count == 0) throw new ArgumentException("no node to place a shard on", nameof(nodes));
        return nodes
            .OrderByDescending(node => Weight(shardId, node))
            .ThenBy(node => node.ToString(), StringComparer.Ordinal)
            .First();
    }

    /// <summary>Up to <paramref name="limit"/> shards that are not on their home among <paramref name="nodes"/>, in shard id order.</summary>
    public static IReadOnlyList<string> Misplaced(IEnumerable<(Address Node, IEnumerable<string> Shards)> allocations, IReadOnlyCollection<Address> nodes, int limit) =>
        allocations
            .SelectMany(a => a.Shards.Select(shard => (Shard: shard, a.Node)))
            .Where(s => HomeOf(s.Shard, nodes) != s.Node)
            .Select(s => s.Shard)
            .Order(StringComparer.Ordinal)
            .Take(limit)
            .ToList();

    /// <summary>A well-mixed hash of the pair that is the same in every process (string.GetHashCode is not).</summary>
    private static ulong Weight(string shardId, Address node) =>
        System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(shardId + "@" + node)));
}
