using Weft.Cluster.Messaging;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.ApiKeys;

// The API-key registry's protocol. One registry entity holds every admin API key of the cluster.

public enum ApiKeyScope
{
    /// <summary>Sees and changes everything in the cluster.</summary>
    Operator = 1,
}

public interface IApiKeyRegistryMessage : IClusterMessage;

public interface IApiKeyEvent : IStoredRecord;

/// <summary>Issues the first operator key, unless an operator key already exists.</summary>
[WireName("apikeys.bootstrap-operator")]
public sealed record BootstrapOperatorKey(string KeyId, string SecretHash, DateTimeOffset At) : IApiKeyRegistryMessage;

/// <summary>Looks a presented key up by id and checks its secret.</summary>
[WireName("apikeys.verify")]
public sealed record VerifyApiKey(string KeyId, string SecretHash) : IApiKeyRegistryMessage;

[WireName("apikeys.bootstrap-result")]
public sealed record OperatorKeyBootstrap(bool Issued) : IClusterMessage;

[WireName("apikeys.verified")]
public sealed record ApiKeyVerified(string KeyId, ApiKeyScope Scope) : IClusterMessage;

public sealed record ApiKeyIssued(string KeyId, ApiKeyScope Scope, string SecretHash, DateTimeOffset At) : IApiKeyEvent;
