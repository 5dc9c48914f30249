using System.Collections.Immutable;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.ApiKeys;

/// <summary>Stored-record manifests and protobuf mappings of the API-key registry.</summary>
public static class ApiKeyRecords
{
    public static RecordCodecs AddApiKeyRecords(this RecordCodecs codecs) => codecs
        .Add<ApiKeyIssued, Stored.ApiKeyIssued>("key.issued",
            e => new() { KeyId = e.KeyId, Scope = (int)e.Scope, SecretHash = e.SecretHash, At = e.At.ToStored() },
            p => new(p.KeyId, (ApiKeyScope)p.Scope, p.SecretHash, p.At.ToTime()))
        .Add<ApiKeyRegistryState, Stored.ApiKeyRegistrySnapshot>("key.snapshot",
            s => new() { Keys = { s.Keys.Values.Select(k => new Stored.ApiKeyIssued { KeyId = k.KeyId, Scope = (int)k.Scope, SecretHash = k.SecretHash, At = k.IssuedAt.ToStored() }) } },
            p => new ApiKeyRegistryState(p.Keys.ToImmutableSortedDictionary(
                k => k.KeyId, k => new ApiKeyRecord(k.KeyId, (ApiKeyScope)k.Scope, k.SecretHash, k.At.ToTime()))));
}
