using Akka.Actor;
using Akka.Cluster;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.Sessions;
using Weft.Cluster.Telemetry;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// <c>GET /api/v1/cluster</c> (operator keys only): every coordinator node with its membership, the
/// shards and entities it hosts per entity type (sharding's cluster-wide statistics), and the agents
/// connected to it (asked of each node's session guardian).
/// </summary>
public static class ClusterEndpoints
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(3);

    public static void MapClusterEndpoints(this RouteGroupBuilder api) => api.MapGet("/cluster", Get);

    private static async Task<IResult> Get(HttpContext http, ActorSystem system, ShardingStatistics sharding)
    {
        TailnetRefs.RequireOperator(http, "the cluster view");
        var cluster = Akka.Cluster.Cluster.Get(system);
        var state = cluster.State;
        var shards = await sharding.CountClusterAsync(http.RequestAborted);
        var members = state.Members.Where(m => m.Status != MemberStatus.Removed).OrderBy(m => m.Address, Member.AddressOrdering).ToList();
        var agents = await Task.WhenAll(members.Select(m => AgentsOn(system, m.Address, http.RequestAborted)));
        var nodes = members.Select((m, i) => new ClusterNodeResource(
                m.Address.ToString(), m.Status.ToString().ToLowerInvariant(), !state.Unreachable.Contains(m),
                shards.TryGetValue(m.Address, out var counts) ? counts.Select(c => new ShardCountResource(c.EntityType, c.Shards, c.Entities)).ToList() : [],
                agents[i]))
            .ToList();
        return Results.Json(new ClusterResource(state.Leader?.ToString(), nodes), AdminJson.Options);
    }

    private static async Task<int?> AgentsOn(ActorSystem system, Address node, CancellationToken cancellation)
    {
        try
        {
            var count = await system.ActorSelection(new RootActorPath(node) / "user" / "sessions")
                .Ask<SessionCount>(CountSessions.Instance, AskTimeout, cancellation);
            return count.Sessions;
        }
        catch (Exception e) when (e is AskTimeoutException or ActorNotFoundException)
        {
            return null;
        }
    }
}
