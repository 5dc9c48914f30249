using Akka.Actor;
using Akka.Cluster;
using Microsoft.AspNetCore.Http;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary><c>GET /healthz</c>: 200 while this node is an Up member of the cluster, 503 otherwise. No key needed.</summary>
public static class HealthEndpoint
{
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

    private static ClusterMemberResource ToResource(Member member, bool reachable) =>
        new(member.Address.ToString(), member.Status.ToString().ToLowerInvariant(), reachable, member.Roles.OrderBy(r => r).ToList());
}
