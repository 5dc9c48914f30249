using System.Collections.Immutable;
using System.Security.Cryptography;
using Weft.Cluster.Persistence;
using Weft.Contracts.Admin;

namespace Weft.Cluster.ApiKeys;

public sealed record ApiKeyRecord(string KeyId, ApiKeyScope Scope, string SecretHash, DateTimeOffset IssuedAt);

/// <summary>Every API key, by id. Only SHA-256 hashes of the secrets are kept.</summary>
public sealed record ApiKeyRegistryState(ImmutableSortedDictionary<string, ApiKeyRecord> Keys) : IStoredRecord
{
    public static readonly ApiKeyRegistryState Empty = new(ImmutableSortedDictionary<string, ApiKeyRecord>.Empty);

    public bool Equals(ApiKeyRegistryState? other) => other is not null && Keys.SequenceEqual(other.Keys);

    public override int GetHashCode() => Keys.Count;

    public bool HasOperatorKey => Keys.Values.Any(k => k.Scope == ApiKeyScope.Operator);

    public Decision<IApiKeyEvent> Process(object command) => command switch
    {
        BootstrapOperatorKey bootstrap when HasOperatorKey || Keys.ContainsKey(bootstrap.KeyId) => Decision<IApiKeyEvent>.Unchanged,
        BootstrapOperatorKey bootstrap => Decision<IApiKeyEvent>.Accept(
            new ApiKeyIssued(bootstrap.KeyId, ApiKeyScope.Operator, bootstrap.SecretHash, bootstrap.At)),
        _ => throw new ArgumentOutOfRangeException(nameof(command), command.GetType().Name, "not an API-key command"),
    };

    public ApiKeyRegistryState Apply(IApiKeyEvent @event) => @event switch
    {
        ApiKeyIssued issued => new ApiKeyRegistryState(Keys.SetItem(issued.KeyId,
            new ApiKeyRecord(issued.KeyId, issued.Scope, issued.SecretHash, issued.At))),
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not an API-key event"),
    };

    public object Verify(VerifyApiKey verify)
    {
        if (Keys.TryGetValue(verify.KeyId, out var key) && SameHash(key.SecretHash, verify.SecretHash))
            return new ApiKeyVerified(key.KeyId, key.Scope);
        return new Rejection(ApiErrorCodes.Unauthorized, "the API key is not valid");
    }

    private static bool SameHash(string stored, string presented) =>
        CryptographicOperations.FixedTimeEquals(
            System.Text.Encoding.ASCII.GetBytes(stored), System.Text.Encoding.ASCII.GetBytes(presented));
}
