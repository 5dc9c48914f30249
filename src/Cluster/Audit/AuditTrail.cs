using Akka.Actor;
using Akka.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Weft.Cluster.Api;
using Weft.Cluster.ApiKeys;

namespace Weft.Cluster.Audit;

/// <summary>
/// Records every admin change that succeeded in its audit log, before the answer goes out: the
/// entry is stored when the response starts, so a client that saw its change acknowledged can find
/// it in the log. Reads, refused requests and the policy dry runs (validate, test) are not changes.
/// </summary>
public sealed class AuditTrail(RequestDelegate next, IRequiredActor<AuditLogActor> logs, TimeProvider clock, ILogger<AuditTrail> log)
{
    private const string TailnetItem = "weft.audit.tailnet";
    private static readonly string[] DryRuns = ["/policy/validate", "/policy/test"];

    /// <summary>Endpoints call this once they know which tailnet the change is about (by id, which outlives a rename).</summary>
    public static void ConcernsTailnet(HttpContext http, string tailnetId) => http.Items[TailnetItem] = tailnetId;

    public async Task InvokeAsync(HttpContext http)
    {
        if (IsChange(http.Request)) http.Response.OnStarting(() => RecordAsync(http));
        await next(http);
    }

    private static bool IsChange(HttpRequest request) =>
        !(HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method) || HttpMethods.IsOptions(request.Method))
        && !DryRuns.Any(dryRun => request.Path.Value?.EndsWith(dryRun, StringComparison.Ordinal) == true);

    private async Task RecordAsync(HttpContext http)
    {
        if (http.Response.StatusCode >= 400 || http.Items[typeof(ApiCaller)] is not ApiCaller caller) return;
        var logName = http.Items[TailnetItem] as string ?? caller.TailnetId ?? AuditLogs.ClusterLog;
        var route = http.GetEndpoint() as RouteEndpoint;
        var entry = new AuditEntry(
            clock.GetUtcNow(),
            $"{(caller.Scope == ApiKeyScope.Operator ? "operator" : "tailnet")}-key {caller.KeyId}",
            $"{http.Request.Method} {(route is null ? http.Request.Path.Value : "/" + route.RoutePattern.RawText?.Trim('/'))}",
            string.Join(" ", http.Request.RouteValues.Select(value => $"{value.Key}={value.Value}")),
            http.Response.StatusCode,
            http.Connection.RemoteIpAddress?.ToString() ?? "");
        // Retried as the change itself was (ClusterAsk): right after a node is lost, the log's shard may still be
        // on its way to another node, and a single ask lost the entry of a change that had been acknowledged.
        // An attempt whose answer was lost but which was stored is not stored twice (the log's Decide).
        object answer;
        try
        {
            answer = await logs.ActorRef.AskFor<AuditAppended>(new RecordAudit(logName, entry), http);
        }
        catch (Exception e) when (e is ApiException or OperationCanceledException or InvalidOperationException)
        {
            answer = e.Message;
        }
        // The change is made whatever happens here (the answer must not turn into an error); only its
        // record may be missing. Say so loudly, with everything it held.
        if (answer is not AuditAppended)
            log.LogError("An admin change was made but its audit entry could not be stored in {Log} ({Reason}): {Entry}", logName, answer, entry);
    }
}
