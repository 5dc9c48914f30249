using Weft.Cluster.Messaging;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.ApiKeys;

// The API-key registry's protocol. One registry entity holds every admin API key of the cluster.

public enum ApiKeyScope
{
    /// <summary>Sees and changes everything in the cluster.</summary>
    Operator = 1,
    /// <summary>A tenant admin: sees and changes one tailnet, and nothing else exists for it.</summary>
    Tailnet = 2,
}

public interface IApiKeyRegistryMessage : IClusterMessage;

public interface IApiKeyEvent : IStoredRecord;

/// <summary>Issues the first operator key, unless an operator key already exists.</summary>
[WireName("apikeys.bootstrap-operator")]
public sealed record BootstrapOperatorKey(string KeyId, string SecretHash, DateTimeOffset At) : IApiKeyRegistryMessage;

/// <summary>Issues a key; a <see cref="ApiKeyScope.Tailnet"/> key names its tailnet.</summary>
[WireName("apikeys.issue")]
public sealed record IssueApiKey(string KeyId, ApiKeyScope Scope, string? TailnetId, string SecretHash, string Description, DateTimeOffset At) : IApiKeyRegistryMessage;

[WireName("apikeys.revoke")]
public sealed record RevokeApiKey(string KeyId) : IApiKeyRegistryMessage;

/// <summary>Revokes every key of a tailnet that is being deleted (nothing to revoke is no error).</summary>
[WireName("apikeys.revoke-tailnet")]
public sealed record RevokeTailnetApiKeys(string TailnetId) : IApiKeyRegistryMessage;

/// <summary>Every key (operator), or the keys of one tailnet.</summary>
[WireName("apikeys.list")]
public sealed record ListApiKeys(string? TailnetId) : IApiKeyRegistryMessage;

/// <summary>Looks a presented key up by id and checks its secret.</summary>
[WireName("apikeys.verify")]
public sealed record VerifyApiKey(string KeyId, string SecretHash) : IApiKeyRegistryMessage;

[WireName("apikeys.bootstrap-result")]
public sealed record OperatorKeyBootstrap(bool Issued) : IClusterMessage;

[WireName("apikeys.verified")]
public sealed record ApiKeyVerified(string KeyId, ApiKeyScope Scope, string? TailnetId) : IClusterMessage;

/// <summary>A key as it may be shown: never its secret or hash.</summary>
[WireName("apikeys.summary")]
public sealed record ApiKeySummary(string KeyId, ApiKeyScope Scope, string? TailnetId, string Description, DateTimeOffset IssuedAt) : IClusterMessage;

[WireName("apikeys.listing")]
public sealed record ApiKeyListing(IReadOnlyList<ApiKeySummary> Keys) : IClusterMessage;

public sealed record ApiKeyIssued(string KeyId, ApiKeyScope Scope, string SecretHash, DateTimeOffset At, string? TailnetId = null, string Description = "") : IApiKeyEvent;

public sealed record ApiKeyRevoked(string KeyId) : IApiKeyEvent;
