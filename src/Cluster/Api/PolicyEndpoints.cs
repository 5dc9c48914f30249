using System.Text;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.Policy;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// <c>/api/v1/tailnets/{tailnet}/policy</c>: the tailnet's access policy in Tailscale's HuJSON format.
/// A set is validated, its tests run, and only then stored and applied; a refusal lists every
/// problem with its line and column, and the old policy stays in force.
/// </summary>
public static class PolicyEndpoints
{
    public const string HuJsonMediaType = "application/hujson";

    public static void MapPolicyEndpoints(this RouteGroupBuilder api)
    {
        var policy = api.MapGroup("/tailnets/{tailnet}/policy");
        policy.MapGet("", Get);
        policy.MapPost("", Set);
        policy.MapPut("", Set);
        policy.MapPost("/validate", Validate);
        policy.MapPost("/test", Test);
    }

    private static async Task<IResult> Get(HttpContext http, string tailnet, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var info = await refs.Tailnets.AskFor<PolicyInfo>(new GetPolicy(entry.TailnetId), http);
        http.Response.Headers.ETag = $"\"{info.Version}\"";
        return Results.Text(info.Text, HuJsonMediaType, Encoding.UTF8);
    }

    private static async Task<IResult> Set(HttpContext http, string tailnet, TailnetRefs refs, TimeProvider clock)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var text = await ReadPolicyText(http.Request);
        await RequireValid(http, refs, entry.TailnetId, text);
        var info = await refs.Tailnets.AskFor<PolicyInfo>(new SetPolicy(entry.TailnetId, text, clock.GetUtcNow()), http);
        http.Response.Headers.ETag = $"\"{info.Version}\"";
        return Results.Json(new PolicyResource(info.Version, info.UpdatedAt), AdminJson.Options);
    }

    private static async Task<IResult> Validate(HttpContext http, string tailnet, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var validation = await RequireValid(http, refs, entry.TailnetId, await ReadPolicyText(http.Request));
        return Results.Json(new PolicyValidationResource(true, validation.Rules, validation.TestsRun), AdminJson.Options);
    }

    private static async Task<IResult> Test(HttpContext http, string tailnet, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var body = (await JsonRequestBody.ReadAsync(http.Request)).AllowOnly("src", "dst", "proto");
        var answer = await refs.Tailnets.AskFor<AccessAnswer>(
            new CheckAccess(entry.TailnetId, body.RequiredString("src"), body.RequiredString("dst"), body.OptionalString("proto")), http);
        return Results.Json(new AccessCheckResource(answer.Allowed, answer.Rule, answer.Explanation), AdminJson.Options);
    }

    private static async Task<PolicyValidation> RequireValid(HttpContext http, TailnetRefs refs, string tailnetId, string text)
    {
        var validation = await refs.Tailnets.AskFor<PolicyValidation>(new ValidatePolicy(tailnetId, text), http);
        if (validation.Issues.Count == 0) return validation;
        throw new ApiException(ApiErrorCodes.PolicyInvalid,
            $"the policy has {validation.Issues.Count} problem(s); the first: {validation.Issues[0]}",
            [.. validation.Issues.Select(i => new ApiIssue(i.Line, i.Column, i.Path, i.Message))]);
    }

    /// <summary>The body as text (HuJSON, JSON or plain text), within the policy size limit.</summary>
    private static async Task<string> ReadPolicyText(HttpRequest request)
    {
        if (request.ContentType is { } type && !(type.StartsWith(HuJsonMediaType, StringComparison.OrdinalIgnoreCase)
            || type.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) || type.StartsWith("text/plain", StringComparison.OrdinalIgnoreCase)))
            throw new ApiException(ApiErrorCodes.UnsupportedMediaType, $"send the policy as {HuJsonMediaType}, application/json or text/plain, not {type}");
        var limit = HuJson.MaxLength * 4; // bytes: UTF-8 takes at most four per character
        if (request.ContentLength > limit) throw new ApiException(ApiErrorCodes.PayloadTooLarge, $"the policy is {request.ContentLength} bytes; the limit is {HuJson.MaxLength} characters");
        using var reader = new StreamReader(request.Body, Encoding.UTF8);
        var buffer = new char[HuJson.MaxLength + 1];
        var length = 0;
        int read;
        while (length < buffer.Length && (read = await reader.ReadAsync(buffer.AsMemory(length), request.HttpContext.RequestAborted)) > 0) length += read;
        if (length > HuJson.MaxLength) throw new ApiException(ApiErrorCodes.PayloadTooLarge, $"the policy exceeds {HuJson.MaxLength} characters");
        if (length == 0) throw ApiException.Invalid("the policy is empty; send the HuJSON text as the body");
        return new string(buffer, 0, length);
    }
}
