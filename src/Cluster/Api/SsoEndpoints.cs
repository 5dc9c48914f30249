using Microsoft.AspNetCore.Http;
using Weft.Cluster.Identity;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// <c>/api/v1/tailnets/{tailnet}/sso</c>: the tailnet's OpenID Connect provider. Each tailnet has its
/// own (issuer, client, allowed email domains and groups). A set is checked against the provider's
/// discovery document first. The client secret is accepted on a set and never returned.
/// </summary>
public static class SsoEndpoints
{
    public static void MapSsoEndpoints(this RouteGroupBuilder api)
    {
        var sso = api.MapGroup("/tailnets/{tailnet}/sso");
        sso.MapGet("", Get);
        sso.MapPut("", Set);
        sso.MapDelete("", Remove);
    }

    private static async Task<IResult> Get(HttpContext http, string tailnet, TailnetRefs refs, LoginLinks links)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var info = await refs.Tailnets.AskFor<SsoInfo>(new GetSso(entry.TailnetId), http);
        if (info.Settings is null) throw new ApiException(ApiErrorCodes.NotFound, $"tailnet {entry.Name} has no identity provider; set one with PUT (weft tailnet sso set)");
        return Results.Json(ToResource(info.Settings, await links.RedirectUriFor(entry.TailnetId)), AdminJson.Options);
    }

    private static async Task<IResult> Set(HttpContext http, string tailnet, TailnetRefs refs, ProviderDiscovery discovery, LoginLinks links, Hosting.ClusterSecret secret)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var body = (await JsonRequestBody.ReadAsync(http.Request))
            .AllowOnly("issuer", "clientId", "clientSecret", "allowedDomains", "allowedGroups", "groupsClaim", "scopes");
        var settings = new SsoSettings(
            body.RequiredString("issuer"), body.RequiredString("clientId"), body.RequiredString("clientSecret"),
            [.. body.OptionalStringList("allowedDomains", SsoRules.MaxEntries) ?? []], [.. body.OptionalStringList("allowedGroups", SsoRules.MaxEntries) ?? []],
            body.OptionalString("groupsClaim") ?? "", [.. body.OptionalStringList("scopes", SsoRules.MaxEntries) ?? []]);
        // The settings' own rules first (no request leaves for a malformed issuer), then the provider itself.
        if (SsoRules.Check(settings) is { } invalid) throw ApiException.From(invalid);
        await discovery.CheckAsync(settings, http.RequestAborted);
        // Only the sealed secret is stored (the journal is readable by whoever reads the database).
        var sealedSettings = settings with { ClientSecret = ClientSecrets.Seal(secret, entry.TailnetId, settings.ClientSecret) };
        var info = await refs.Tailnets.AskFor<SsoInfo>(new SetSso(entry.TailnetId, sealedSettings), http);
        return Results.Json(ToResource(info.Settings!, await links.RedirectUriFor(entry.TailnetId)), AdminJson.Options);
    }

    private static async Task<IResult> Remove(HttpContext http, string tailnet, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        await refs.Tailnets.AskFor<SsoInfo>(new RemoveSso(entry.TailnetId), http); // removing twice changes nothing
        return Results.NoContent();
    }

    private static SsoResource ToResource(SsoSettings settings, Uri redirectUri) =>
        new(settings.Issuer, settings.ClientId, ClientSecretSet: true, settings.AllowedDomains, settings.AllowedGroups, settings.GroupsClaim, settings.Scopes,
            redirectUri.AbsoluteUri);
}
