using Akka.Actor;
using Akka.Cluster;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Hosting;
using Weft.Cluster.Persistence;
using Weft.Cluster.Replication;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// <c>GET /healthz</c>: this node's view of the cluster; 200 while it is an Up member, 503 otherwise.
/// <c>GET /healthz/ready</c>: whether this node can serve now — a member on the majority side, started,
/// reaching its store, holding replicas of the keys and names, and not shutting down. No key needed.
/// </summary>
public static class HealthEndpoint
{
    public const string LivePath = "/healthz";
    public const string ReadyPath = "/healthz/ready";

    public static IResult Handle(ActorSystem system)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var state = cluster.State;
        var members = state.Members
            .Select(m => ToResource(m, reachable: !state.Unreachable.Contains(m)))
            .ToList();
        var self = ToResource(cluster.SelfMember, reachable: true);
        var up = cluster.SelfMember.Status == MemberStatus.Up;
        var report = new HealthReport(up ? "up" : "starting", self, state.Leader?.ToString(), members);
        return Results.Json(report, AdminJson.Options, statusCode: up ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
    }

    public static async Task<IResult> Ready(
        ActorSystem system, CoordinatorReadiness readiness, StorageProbe storage, Replica<ApiKeyRegistryState> keys, Replica<TailnetDirectoryState> names,
        CancellationToken cancellation)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var stored = await storage.CheckAsync(cancellation);
        var replicated = await keys.ReadAsync(cancellation) is not null && await names.ReadAsync(cancellation) is not null;
        var shutdown = CoordinatedShutdown.Get(system).ShutdownReason;
        List<ReadinessCheck> checks =
        [
            new("member", cluster.SelfMember.Status == MemberStatus.Up, $"this node is {cluster.SelfMember.Status.ToString().ToLowerInvariant()}"),
            Majority(cluster),
            new("started", readiness.Endpoints.IsCompletedSuccessfully, readiness.Endpoints.IsCompletedSuccessfully ? "listening, keys established" : "starting"),
            new("storage", stored.Reachable, stored.Detail),
            new("replicas", replicated, replicated ? "API keys and tailnet names replicated here" : "waiting for the API keys and tailnet names"),
            new("shutdown", shutdown is null, shutdown is null ? "running" : $"shutting down ({shutdown.GetType().Name})"),
        ];
        var ready = checks.All(c => c.Ok);
        return Results.Json(new ReadinessReport(ready, checks), AdminJson.Options, statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
    }

    /// <summary>
    /// The split-brain resolver's keep-majority rule as this node sees it: more reachable members
    /// than unreachable ones (a tie goes to the side with the lowest address). A node on the minority
    /// side of a partition is about to be downed, and must not take requests meanwhile.
    /// </summary>
    private static ReadinessCheck Majority(Akka.Cluster.Cluster cluster)
    {
        var state = cluster.State;
        var counted = state.Members.Where(m => m.Status is MemberStatus.Up or MemberStatus.Leaving).ToList();
        var unreachable = counted.Count(m => state.Unreachable.Contains(m));
        var reachable = counted.Count - unreachable;
        var lowest = counted.OrderBy(m => m.Address, Member.AddressOrdering).FirstOrDefault();
        var majority = reachable > unreachable || (reachable == unreachable && lowest is not null && !state.Unreachable.Contains(lowest));
        return new ReadinessCheck("majority", majority, $"{reachable} of {counted.Count} members reachable");
    }

    private static ClusterMemberResource ToResource(Member member, bool reachable) =>
        new(member.Address.ToString(), member.Status.ToString().ToLowerInvariant(), reachable, member.Roles.OrderBy(r => r).ToList());
}
