using Akka.Hosting;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.ApiKeys;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>Who is calling the admin API, as proven by their key.</summary>
public sealed record ApiCaller(string KeyId, ApiKeyScope Scope, string? TailnetId)
{
    public bool IsOperator => Scope == ApiKeyScope.Operator;

    public static ApiCaller Of(HttpContext context) =>
        context.Items[typeof(ApiCaller)] as ApiCaller
        ?? throw new InvalidOperationException("admin endpoint reached without authentication");
}

/// <summary>Requires <c>Authorization: Bearer &lt;key&gt;</c> on every <c>/api</c> request and checks it with the key registry.</summary>
public sealed class ApiKeyAuthentication(RequestDelegate next)
{
    private const string Scheme = "Bearer ";

    public async Task InvokeAsync(HttpContext context, IRequiredActor<ApiKeyRegistryActor> registry)
    {
        var header = context.Request.Headers.Authorization.ToString();
        if (string.IsNullOrEmpty(header))
            throw new ApiException(ApiErrorCodes.Unauthorized, "missing API key: send 'Authorization: Bearer <key>'");
        if (!header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
            throw new ApiException(ApiErrorCodes.Unauthorized, "the Authorization header must read 'Bearer <key>'");
        if (!ApiKeyToken.TryParse(header[Scheme.Length..].Trim(), out var token))
            throw new ApiException(ApiErrorCodes.Unauthorized, "the API key is not valid");

        var verified = await registry.ActorRef.AskFor<ApiKeyVerified>(
            new VerifyApiKey(token.KeyId, token.SecretHash), context.RequestAborted);
        context.Items[typeof(ApiCaller)] = new ApiCaller(verified.KeyId, verified.Scope, verified.TailnetId);
        await next(context);
    }
}
