using Microsoft.AspNetCore.Http;
using Weft.Cluster.ApiKeys;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// <c>/api/v1/api-keys</c>: operators issue and revoke any key; a tenant key manages the keys of its
/// own tailnet and cannot see any other.
/// </summary>
public static class ApiKeyEndpoints
{
    public static void MapApiKeyEndpoints(this RouteGroupBuilder api)
    {
        var keys = api.MapGroup("/api-keys");
        keys.MapGet("", List);
        keys.MapPost("", Issue);
        keys.MapDelete("/{key}", Revoke);
    }

    private static async Task<IResult> List(HttpContext http, TailnetRefs refs)
    {
        var caller = ApiCaller.Of(http);
        var listing = await ListAsync(http, refs, caller.IsOperator ? null : caller.TailnetId);
        return Results.Json(new ApiKeyListResource(listing.Keys.Select(ToResource).ToList()), AdminJson.Options);
    }

    /// <summary>From this node's replica of the keys when it has one.</summary>
    private static async Task<ApiKeyListing> ListAsync(HttpContext http, TailnetRefs refs, string? tailnetId) =>
        await refs.KeyReplicaAsync(http) is { } replica ? replica.List(new ListApiKeys(tailnetId)) : await refs.ApiKeys.AskFor<ApiKeyListing>(new ListApiKeys(tailnetId), http);

    private static async Task<IResult> Issue(HttpContext http, TailnetRefs refs, IdempotentCreation idempotent, TimeProvider clock)
    {
        var caller = ApiCaller.Of(http);
        // A key acts with all of its tailnet's rights, an owner's among them (it makes and unmakes owners): a person
        // signed in to the console who is not an owner would make themselves one with it.
        if (!caller.ActsAsOwner)
            throw new ApiException(ApiErrorCodes.Forbidden, "only an owner issues API keys: a key acts with all of the tailnet's rights, an owner's among them");
        var body = (await JsonRequestBody.ReadAsync(http.Request)).AllowOnly("scope", "tailnet", "description");
        var scope = body.OptionalString("scope") ?? (caller.IsOperator ? "operator" : "tailnet");
        string? tailnetId = null;
        switch (scope)
        {
            case "operator":
                TailnetRefs.RequireOperator(http, "issuing an operator key");
                if (body.OptionalString("tailnet") is not null) throw ApiException.Invalid("an operator key is not tied to a tailnet: drop 'tailnet'");
                break;
            case "tailnet":
                var tailnet = body.OptionalString("tailnet") ?? caller.TailnetId
                    ?? throw ApiException.Invalid("missing required field 'tailnet' for a tailnet key");
                tailnetId = (await refs.ResolveAsync(http, tailnet)).TailnetId;
                break;
            default:
                throw ApiException.Invalid($"field 'scope' must be \"operator\" or \"tailnet\", got \"{scope}\"");
        }
        var token = ApiKeyToken.Generate(await idempotent.IdsFor(http, "api-key"));
        var description = body.OptionalString("description") ?? "";
        var issued = await refs.ApiKeys.AskFor<ApiKeySummary>(new IssueApiKey(token.KeyId,
            tailnetId is null ? ApiKeyScope.Operator : ApiKeyScope.Tailnet, tailnetId, token.SecretHash, description, clock.GetUtcNow()), http);
        if (issued.Description != description)
            throw new ApiException(ApiErrorCodes.Conflict, $"this {IdempotentCreation.Header} already issued API key {issued.KeyId} with another description; use a new one for a new key");
        return Results.Json(new CreatedApiKeyResource(token.ToString(), ToResource(issued)), AdminJson.Options, statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> Revoke(HttpContext http, string key, TailnetRefs refs)
    {
        var caller = ApiCaller.Of(http);
        if (!caller.IsOperator)
        {
            // A tenant may only revoke its own tailnet's keys; any other id does not exist for it.
            var own = await ListAsync(http, refs, caller.TailnetId);
            if (own.Keys.All(k => k.KeyId != key)) throw new ApiException(ApiErrorCodes.NotFound, $"API key {key} does not exist");
        }
        await refs.ApiKeys.Remove(new RevokeApiKey(key), http);
        return Results.NoContent();
    }

    private static ApiKeyResource ToResource(ApiKeySummary key) =>
        new(key.KeyId, key.Scope == ApiKeyScope.Operator ? "operator" : "tailnet", key.TailnetId, key.Description, key.IssuedAt);
}
