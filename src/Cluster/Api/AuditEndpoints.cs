using System.Globalization;
using Akka.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Weft.Cluster.Audit;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>Reading the audit log: a tailnet's changes (its own admins may read them; operators, a deleted tailnet's too) and the cluster's (operators only).</summary>
public static class AuditEndpoints
{
    /// <summary>Without <c>since</c>, a query covers the last day.</summary>
    public static readonly TimeSpan DefaultWindow = TimeSpan.FromDays(1);

    public const int DefaultLimit = 100;

    public static void MapAuditEndpoints(this RouteGroupBuilder v1)
    {
        v1.MapGet("/tailnets/{tailnet}/audit", TailnetLog);
        v1.MapGet("/audit", ClusterLog);
    }

    private static async Task<IResult> TailnetLog(HttpContext http, string tailnet, TailnetRefs refs, IRequiredActor<AuditLogActor> logs, TimeProvider clock)
    {
        // A tailnet's log is kept by its id and outlives it: an operator naming an id reads that log, a deleted tailnet's
        // too, with no lookup (one that never existed reads as empty). Names cannot look like ids (no '_' in a DNS label).
        if (ApiCaller.Of(http).IsOperator && Identifiers.IsId(tailnet, Identifiers.TailnetPrefix))
            return await Read(http, logs, tailnet, clock);
        var entry = await refs.ResolveAsync(http, tailnet);
        return await Read(http, logs, entry.TailnetId, clock);
    }

    private static Task<IResult> ClusterLog(HttpContext http, IRequiredActor<AuditLogActor> logs, TimeProvider clock)
    {
        TailnetRefs.RequireOperator(http, "reading the cluster's audit log");
        return Read(http, logs, AuditLogs.ClusterLog, clock);
    }

    private static async Task<IResult> Read(HttpContext http, IRequiredActor<AuditLogActor> logs, string log, TimeProvider clock)
    {
        var since = ParseSince(http.Request.Query["since"], clock.GetUtcNow());
        var limit = QueryParameters.Limit(http.Request.Query["limit"], AuditLogs.MaxPage) ?? DefaultLimit;
        var page = await logs.ActorRef.AskFor<AuditPage>(new GetAuditLog(log, since, limit), http);
        return Results.Json(new AuditLogResource(log,
            page.Entries.Select(e => new AuditEntryResource(e.At, e.Actor, e.Action, e.Target, e.Status, e.Source)).ToList(), page.Truncated), AdminJson.Options);
    }

    /// <summary>A duration back from now (<c>90s</c>, <c>15m</c>, <c>1h</c>, <c>7d</c>) or a timestamp (ISO 8601).</summary>
    public static DateTimeOffset ParseSince(string? text, DateTimeOffset now)
    {
        if (string.IsNullOrEmpty(text)) return now - DefaultWindow;
        if (text.Length is >= 2 and <= 12 && long.TryParse(text[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out var amount) && amount <= 100_000)
        {
            TimeSpan? back = text[^1] switch
            {
                's' => TimeSpan.FromSeconds(amount),
                'm' => TimeSpan.FromMinutes(amount),
                'h' => TimeSpan.FromHours(amount),
                'd' => TimeSpan.FromDays(amount),
                _ => null,
            };
            if (back is { } window) return now - window;
        }
        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)) return at;
        throw ApiException.Invalid($"since must be a duration such as 90s, 15m, 1h or 7d, or a timestamp such as 2026-12-01T12:00:00Z; got '{QueryParameters.Printable(text)}'");
    }
}
