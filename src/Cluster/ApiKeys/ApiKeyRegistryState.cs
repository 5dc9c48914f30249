using System.Collections.Immutable;
using System.Security.Cryptography;
using Weft.Cluster.Persistence;
using Weft.Contracts.Admin;

namespace Weft.Cluster.ApiKeys;

public sealed record ApiKeyRecord(string KeyId, ApiKeyScope Scope, string SecretHash, DateTimeOffset IssuedAt, string? TailnetId = null, string Description = "")
{
    public ApiKeySummary ToSummary() => new(KeyId, Scope, TailnetId, Description, IssuedAt);
}

/// <summary>
/// Every API key, by id (only SHA-256 hashes of the secrets are kept), and the ids of the keys revoked.
/// A key created with an Idempotency-Key has an id and a secret derived from it, so the same request
/// sent again would issue the same secret: a revoked id is never issued again, or a leaked and revoked
/// secret would come back to life (with whatever scope the new request asked for).
/// </summary>
public sealed record ApiKeyRegistryState(ImmutableSortedDictionary<string, ApiKeyRecord> Keys, ImmutableSortedSet<string> RevokedKeyIds) : IStoredRecord
{
    public const int MaxDescriptionLength = 200;

    /// <summary>
    /// Keys one tailnet may hold: the registry is shared by every tenant and replicated to every node,
    /// so no tenant may grow it without bound.
    /// </summary>
    public const int MaxKeysPerTailnet = 100;

    public static readonly ApiKeyRegistryState Empty = new(ImmutableSortedDictionary<string, ApiKeyRecord>.Empty, ImmutableSortedSet.Create<string>(StringComparer.Ordinal));

    public bool Equals(ApiKeyRegistryState? other) => other is not null && Keys.SequenceEqual(other.Keys) && RevokedKeyIds.SequenceEqual(other.RevokedKeyIds);

    public override int GetHashCode() => Keys.Count;

    public bool HasOperatorKey => Keys.Values.Any(k => k.Scope == ApiKeyScope.Operator);

    public Decision<IApiKeyEvent> Process(object command) => command switch
    {
        BootstrapOperatorKey bootstrap when HasOperatorKey || Keys.ContainsKey(bootstrap.KeyId) => Decision<IApiKeyEvent>.Unchanged,
        BootstrapOperatorKey bootstrap => Decision<IApiKeyEvent>.Accept(
            new ApiKeyIssued(bootstrap.KeyId, ApiKeyScope.Operator, bootstrap.SecretHash, bootstrap.At, null, "bootstrap")),
        IssueApiKey issue => Issue(issue),
        RevokeApiKey revoke when !Keys.ContainsKey(revoke.KeyId) =>
            Decision<IApiKeyEvent>.Reject(Rejection.NotFound($"API key {revoke.KeyId} does not exist")),
        RevokeApiKey revoke when Keys[revoke.KeyId].Scope == ApiKeyScope.Operator && Keys.Values.Count(k => k.Scope == ApiKeyScope.Operator) == 1 =>
            Decision<IApiKeyEvent>.Reject(Rejection.Conflict("this is the last operator key; issue another before revoking it")),
        RevokeApiKey revoke => Decision<IApiKeyEvent>.Accept(new ApiKeyRevoked(revoke.KeyId)),
        RevokeTailnetApiKeys revoke => Decision<IApiKeyEvent>.Accept(Keys.Values
            .Where(k => k.Scope == ApiKeyScope.Tailnet && k.TailnetId == revoke.TailnetId)
            .Select(IApiKeyEvent (k) => new ApiKeyRevoked(k.KeyId)).ToList()),
        _ => throw new ArgumentOutOfRangeException(nameof(command), command.GetType().Name, "not an API-key command"),
    };

    private Decision<IApiKeyEvent> Issue(IssueApiKey issue)
    {
        if (RevokedKeyIds.Contains(issue.KeyId))
            return Decision<IApiKeyEvent>.Reject(Rejection.Conflict(
                $"API key {issue.KeyId} was revoked and is never issued again; a creation sent again with the Idempotency-Key that created it names it: use a new key"));
        if (Keys.TryGetValue(issue.KeyId, out var same))
            return same.SecretHash == issue.SecretHash && same.Scope == issue.Scope && same.TailnetId == issue.TailnetId
                ? Decision<IApiKeyEvent>.Unchanged // the same request again: answered as the first one was
                : Decision<IApiKeyEvent>.Reject(Tailnets.TailnetState.IdTaken("API key", issue.KeyId));
        if (issue.Scope == ApiKeyScope.Tailnet && string.IsNullOrEmpty(issue.TailnetId))
            return Decision<IApiKeyEvent>.Reject(Rejection.Invalid("a tailnet key must name its tailnet"));
        if (issue.Scope == ApiKeyScope.Operator && issue.TailnetId is not null)
            return Decision<IApiKeyEvent>.Reject(Rejection.Invalid("an operator key is not tied to a tailnet"));
        if (issue.Description.Length > MaxDescriptionLength)
            return Decision<IApiKeyEvent>.Reject(Rejection.Invalid($"description is longer than {MaxDescriptionLength} characters"));
        if (issue.Scope == ApiKeyScope.Tailnet && Keys.Values.Count(k => k.TailnetId == issue.TailnetId) >= MaxKeysPerTailnet)
            return Decision<IApiKeyEvent>.Reject(Rejection.Conflict($"tailnet {issue.TailnetId} already holds {MaxKeysPerTailnet} API keys, the most one tailnet may hold; revoke one first"));
        return Decision<IApiKeyEvent>.Accept(new ApiKeyIssued(issue.KeyId, issue.Scope, issue.SecretHash, issue.At, issue.TailnetId, issue.Description));
    }

    public ApiKeyRegistryState Apply(IApiKeyEvent @event) => @event switch
    {
        ApiKeyIssued issued => this with { Keys = Keys.SetItem(issued.KeyId,
            new ApiKeyRecord(issued.KeyId, issued.Scope, issued.SecretHash, issued.At, issued.TailnetId, issued.Description)) },
        ApiKeyRevoked revoked => new ApiKeyRegistryState(Keys.Remove(revoked.KeyId), RevokedKeyIds.Add(revoked.KeyId)),
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not an API-key event"),
    };

    public object Verify(VerifyApiKey verify)
    {
        if (Keys.TryGetValue(verify.KeyId, out var key) && SameHash(key.SecretHash, verify.SecretHash))
            return new ApiKeyVerified(key.KeyId, key.Scope, key.TailnetId);
        return new Rejection(ApiErrorCodes.Unauthorized, "the API key is not valid");
    }

    public ApiKeyListing List(ListApiKeys list) =>
        new(Keys.Values.Where(k => list.TailnetId is null || k.TailnetId == list.TailnetId).Select(k => k.ToSummary()).ToList());

    private static bool SameHash(string stored, string presented) =>
        CryptographicOperations.FixedTimeEquals(
            System.Text.Encoding.ASCII.GetBytes(stored), System.Text.Encoding.ASCII.GetBytes(presented));
}
