using Akka.Actor;
using Akka.Cluster;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// The health endpoints, none of which needs a key:
/// <list type="bullet">
/// <item><c>GET /healthz</c>: this node's view of the cluster; 200 while it is an Up member, 503 otherwise.</item>
/// <item><c>GET /healthz/live</c>: whether the process should be left running (Akka.Hosting's actor-system liveness check).</item>
/// <item><c>GET /healthz/ready</c>: whether this node can serve now. The checks come from the libraries
/// (Akka.Hosting's cluster readiness, Akka.Persistence's journal and snapshot-store health, Akka.Persistence.Sql's
/// connectivity checks) and from Weft (<see cref="CoordinatorHealthChecks"/>), run by ASP.NET Core's health-check service.</item>
/// </list>
/// </summary>
public static class HealthEndpoint
{
    public const string ClusterPath = "/healthz";
    public const string LivePath = "/healthz/live";
    public const string ReadyPath = "/healthz/ready";

    /// <summary>The tag of the checks behind <see cref="LivePath"/>.</summary>
    public const string LiveTag = "live";

    /// <summary>The tag of the checks behind <see cref="ReadyPath"/>.</summary>
    public const string ReadyTag = "ready";

    public static void MapHealthEndpoints(this WebApplication app)
    {
        app.MapGet(ClusterPath, ClusterView);
        app.MapHealthChecks(LivePath, Tagged(LiveTag));
        app.MapHealthChecks(ReadyPath, Tagged(ReadyTag));
    }

    private static HealthCheckOptions Tagged(string tag) => new()
    {
        Predicate = check => check.Tags.Contains(tag),
        // Degraded still serves (for example, a journal slower than usual): 200, and the report says why.
        ResultStatusCodes =
        {
            [HealthStatus.Healthy] = StatusCodes.Status200OK,
            [HealthStatus.Degraded] = StatusCodes.Status200OK,
            [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
        },
        ResponseWriter = WriteReport,
    };

    /// <summary>Each check by name, whether it passed and why: <see cref="ReadinessReport"/> as JSON.</summary>
    private static Task WriteReport(HttpContext http, Microsoft.Extensions.Diagnostics.HealthChecks.HealthReport report)
    {
        var checks = report.Entries
            .Select(e => new ReadinessCheck(e.Key, e.Value.Status != HealthStatus.Unhealthy, Detail(e.Value)))
            .ToList();
        http.Response.Headers.CacheControl = "no-store";
        return http.Response.WriteAsJsonAsync(new ReadinessReport(report.Status != HealthStatus.Unhealthy, checks), AdminJson.Options);
    }

    private static string Detail(HealthReportEntry entry)
    {
        var detail = entry.Description ?? entry.Status.ToString().ToLowerInvariant();
        return entry.Exception is { } e && !detail.Contains(e.Message, StringComparison.Ordinal) ? $"{detail}: {e.Message}" : detail;
    }

    private static IResult ClusterView(ActorSystem system)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var state = cluster.State;
        var members = state.Members
            .Select(m => ToResource(m, reachable: !state.Unreachable.Contains(m)))
            .ToList();
        var self = ToResource(cluster.SelfMember, reachable: true);
        var up = cluster.SelfMember.Status == MemberStatus.Up;
        var report = new Contracts.Admin.HealthReport(up ? "up" : "starting", self, state.Leader?.ToString(), members);
        return Results.Json(report, AdminJson.Options, statusCode: up ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
    }

    private static ClusterMemberResource ToResource(Member member, bool reachable) =>
        new(member.Address.ToString(), member.Status.ToString().ToLowerInvariant(), reachable, member.Roles.OrderBy(r => r).ToList());
}
