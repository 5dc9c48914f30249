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
        var listing = await refs.ApiKeys.AskFor<ApiKeyListing>(new ListApiKeys(caller.IsOperator ? null : caller.TailnetId), http.RequestAborted);
        return Results.Json(new ApiKeyListResource(listing.Keys.Select(ToResource).ToList()), AdminJson.Options);
    }

    private static async Task<IResult> Issue(HttpContext http, TailnetRefs refs, TimeProvider clock)
    {
        var caller = ApiCaller.Of(http);
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
        var token = ApiKeyToken.Generate();
        var issued = await refs.ApiKeys.AskFor<ApiKeySummary>(new IssueApiKey(token.KeyId,
            tailnetId is null ? ApiKeyScope.Operator : ApiKeyScope.Tailnet, tailnetId, token.SecretHash, body.OptionalString("description") ?? "",
            clock.GetUtcNow()), http.RequestAborted);
        return Results.Json(new CreatedApiKeyResource(token.ToString(), ToResource(issued)), AdminJson.Options, statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> Revoke(HttpContext http, string key, TailnetRefs refs)
    {
        var caller = ApiCaller.Of(http);
        if (!caller.IsOperator)
        {
            // A tenant may only revoke its own tailnet's keys; any other id does not exist for it.
            var own = await refs.ApiKeys.AskFor<ApiKeyListing>(new ListApiKeys(caller.TailnetId), http.RequestAborted);
            if (own.Keys.All(k => k.KeyId != key)) throw new ApiException(ApiErrorCodes.NotFound, $"API key {key} does not exist");
        }
        await refs.ApiKeys.AskFor<ApiKeyListing>(new RevokeApiKey(key), http.RequestAborted);
        return Results.NoContent();
    }

    private static ApiKeyResource ToResource(ApiKeySummary key) =>
        new(key.KeyId, key.Scope == ApiKeyScope.Operator ? "operator" : "tailnet", key.TailnetId, key.Description, key.IssuedAt);
}
