using Akka.Actor;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Persistence;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>Who is calling the admin API, as proven by their key.</summary>
public sealed record ApiCaller(string KeyId, ApiKeyScope Scope, string? TailnetId)
{
    public bool IsOperator => Scope == ApiKeyScope.Operator;

    /// <summary>A person signed in to the console (null: an API key, which acts with all of its scope's rights).</summary>
    public Identity.ConsoleSession? Person { get; init; }

    /// <summary>May make and unmake owners: an API key, or a signed-in owner.</summary>
    public bool ActsAsOwner => Person is null || Person.Role == Tailnets.UserRole.Owner;

    public static ApiCaller Of(HttpContext context) =>
        context.Items[typeof(ApiCaller)] as ApiCaller
        ?? throw new InvalidOperationException("admin endpoint reached without authentication");
}

/// <summary>
/// Requires <c>Authorization: Bearer &lt;key&gt;</c> on every <c>/api</c> request, and checks it
/// against this node's replica of the API keys: no request waits on the one registry entity, so
/// losing the node that hosts it stops no admin call. The registry is asked only when this node has
/// no replica yet, or briefly when the replica does not know the key (it may trail a key issued while
/// this node was unreachable by a gossip round).
/// </summary>
public sealed class ApiKeyAuthentication(RequestDelegate next)
{
    private const string Scheme = "Bearer ";
    private static readonly TimeSpan MissTimeout = TimeSpan.FromSeconds(2);

    public async Task InvokeAsync(HttpContext context, TailnetRefs refs, ActorSystem system)
    {
        // A node that is leaving sends its clients to the others at once rather than let them wait on it.
        if (CoordinatedShutdown.Get(system).ShutdownReason is not null)
            throw new ApiException(ApiErrorCodes.Unavailable, "this coordinator is shutting down; another node of the cluster serves this request");
        context.Items[typeof(ApiCaller)] = await CallerAsync(context, refs);
        await next(context);
    }

    /// <summary>
    /// Who the request's key, or its console session (a person), is now; an <see cref="ApiException"/> when it is
    /// no one (no key, a revoked or unknown one, an expired session, a deleted or demoted user). A request that
    /// lasts (the console's event stream) asks again as it goes.
    /// </summary>
    public static async Task<ApiCaller> CallerAsync(HttpContext context, TailnetRefs refs)
    {
        var header = context.Request.Headers.Authorization.ToString();
        if (string.IsNullOrEmpty(header) && await Identity.ConsoleSignIn.CallerAsync(context, refs) is { } person)
            return person; // a person signed in to the console
        if (string.IsNullOrEmpty(header))
            throw new ApiException(ApiErrorCodes.Unauthorized, "missing API key: send 'Authorization: Bearer <key>' (or sign in to the console)");
        if (!header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
            throw new ApiException(ApiErrorCodes.Unauthorized, "the Authorization header must read 'Bearer <key>'");
        if (!TryReadPresentedKey(context.Request, out var token))
            throw new ApiException(ApiErrorCodes.Unauthorized, "the API key is not valid");

        var verify = new VerifyApiKey(token.KeyId, token.SecretHash);
        var answer = await refs.KeyReplicaAsync(context) switch
        {
            { } replica when replica.Keys.ContainsKey(token.KeyId) => replica.Verify(verify),
            null => await refs.ApiKeys.AskFor<object>(verify, context),
            _ => await AskBriefly(refs, verify, context),
        };
        if (answer is not ApiKeyVerified verified) throw ApiException.From(answer as Rejection ?? new Rejection(ApiErrorCodes.Unauthorized, "the API key is not valid"));
        return new ApiCaller(verified.KeyId, verified.Scope, verified.TailnetId);
    }

    /// <summary>The API key a request presents as <c>Bearer</c>, well-formed but not yet verified.</summary>
    public static bool TryReadPresentedKey(HttpRequest request, out ApiKeyToken token)
    {
        var header = request.Headers.Authorization.ToString();
        token = null!;
        return header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase) && ApiKeyToken.TryParse(header[Scheme.Length..].Trim(), out token);
    }

    private static async Task<object> AskBriefly(TailnetRefs refs, VerifyApiKey verify, HttpContext context)
    {
        try
        {
            return await refs.ApiKeys.Ask<object>(verify, MissTimeout, context.RequestAborted);
        }
        catch (AskTimeoutException)
        {
            return new Rejection(ApiErrorCodes.Unauthorized, "the API key is not valid");
        }
    }
}
