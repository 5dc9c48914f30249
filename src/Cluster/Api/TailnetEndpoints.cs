using Akka.Hosting;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.Audit;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>The tailnet resources of the admin API. <c>{tailnet}</c> is an id (<c>tn_…</c>) or a name.</summary>
public static class TailnetEndpoints
{
    public static void MapTailnetEndpoints(this RouteGroupBuilder api)
    {
        var tailnets = api.MapGroup("/tailnets");
        tailnets.MapPost("", Create);
        tailnets.MapGet("", List);
        tailnets.MapGet("/{tailnet}", Get);
        tailnets.MapPatch("/{tailnet}", UpdateSettings);
        tailnets.MapPost("/{tailnet}/rename", Rename);
        tailnets.MapDelete("/{tailnet}", Delete);
        tailnets.MapGet("/{tailnet}/placement", Placement);
    }

    private static async Task<IResult> Create(HttpContext http, TailnetRefs refs, IdempotentCreation idempotent, TimeProvider clock)
    {
        TailnetRefs.RequireOperator(http, "creating a tailnet");
        var body = (await JsonRequestBody.ReadAsync(http.Request)).AllowOnly("name", "nodeKeyExpiryDays", "dnsSuffix", "ephemeralTimeoutSeconds", "keylessRegistration");
        var name = body.RequiredString("name");
        var defaults = TailnetRules.DefaultSettings(name);
        var settings = new TailnetSettings(
            body.OptionalInt("nodeKeyExpiryDays") ?? defaults.NodeKeyExpiryDays,
            body.OptionalString("dnsSuffix") ?? defaults.DnsSuffix,
            body.OptionalInt("ephemeralTimeoutSeconds") ?? defaults.EphemeralTimeoutSeconds,
            body.OptionalBool("keylessRegistration") ?? false);

        var ids = await idempotent.IdsFor(http, "tailnet");
        var registered = await refs.Directory.AskFor<TailnetRegistered>(
            new RegisterTailnet(Identifiers.NewTailnetId(ids), name, settings, clock.GetUtcNow()), http);
        Audit.AuditTrail.ConcernsTailnet(http, registered.Entry.TailnetId);
        var resource = ToResource(registered.Entry, registered.Info);
        return Results.Json(resource, AdminJson.Options, statusCode: StatusCodes.Status201Created);
    }

    /// <summary>Every tailnet for an operator; a tenant key lists just its own.</summary>
    private static async Task<IResult> List(HttpContext http, TailnetRefs refs)
    {
        var caller = ApiCaller.Of(http);
        var listing = await refs.ListAsync(http);
        var rows = listing.Tailnets
            .Where(t => caller.IsOperator || t.TailnetId == caller.TailnetId)
            .Select(t => new TailnetSummaryResource(t.TailnetId, t.Name, t.CreatedAt)).ToList();
        return Results.Json(new TailnetListResource(rows), AdminJson.Options);
    }

    private static async Task<IResult> Get(HttpContext http, string tailnet, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var info = await refs.Tailnets.AskFor<TailnetInfo>(new GetTailnet(entry.TailnetId), http);
        return Results.Json(ToResource(entry, info), AdminJson.Options);
    }

    private static async Task<IResult> UpdateSettings(HttpContext http, string tailnet, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var body = (await JsonRequestBody.ReadAsync(http.Request)).AllowOnly("nodeKeyExpiryDays", "dnsSuffix", "ephemeralTimeoutSeconds", "keylessRegistration");
        var change = new ChangeTailnetSettings(entry.TailnetId, body.OptionalInt("nodeKeyExpiryDays"), body.OptionalString("dnsSuffix"), body.OptionalInt("ephemeralTimeoutSeconds"),
            body.OptionalBool("keylessRegistration"));
        var info = await refs.Tailnets.AskFor<TailnetInfo>(change, http);
        return Results.Json(ToResource(entry, info), AdminJson.Options);
    }

    private static async Task<IResult> Rename(HttpContext http, string tailnet, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        TailnetRefs.RequireOperator(http, "renaming a tailnet");
        var body = (await JsonRequestBody.ReadAsync(http.Request)).AllowOnly("name");
        var renamed = await refs.Directory.AskFor<TailnetEntry>(new RenameTailnet(entry.TailnetId, body.RequiredString("name")), http);
        var info = await refs.Tailnets.AskFor<TailnetInfo>(new GetTailnet(entry.TailnetId), http);
        return Results.Json(ToResource(renamed, info), AdminJson.Options);
    }

    private static async Task<IResult> Delete(HttpContext http, string tailnet, TailnetRefs refs, TimeProvider clock)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        TailnetRefs.RequireOperator(http, "deleting a tailnet");
        await refs.Directory.Remove(new RemoveTailnet(entry.TailnetId, clock.GetUtcNow()), http);
        return Results.NoContent();
    }

    /// <summary>Which coordinator nodes host the tailnet's entity and its audit log now (operators only: tenants do not see the cluster's insides).</summary>
    private static async Task<IResult> Placement(HttpContext http, string tailnet, TailnetRefs refs, IRequiredActor<AuditLogActor> logs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        TailnetRefs.RequireOperator(http, "placement");
        var placement = await refs.Tailnets.AskFor<TailnetPlacement>(new GetTailnetPlacement(entry.TailnetId), http);
        var audit = await logs.ActorRef.AskFor<AuditPlacement>(new GetAuditPlacement(entry.TailnetId), http);
        return Results.Json(new TailnetPlacementResource(placement.TailnetId, placement.Node, audit.Node), AdminJson.Options);
    }

    private static TailnetResource ToResource(TailnetEntry entry, TailnetInfo info) =>
        new(entry.TailnetId, entry.Name, entry.CreatedAt,
            new TailnetSettingsResource(info.Settings.NodeKeyExpiryDays, info.Settings.DnsSuffix, (int)info.Settings.EphemeralTimeout.TotalSeconds, info.Settings.KeylessRegistration));
}
