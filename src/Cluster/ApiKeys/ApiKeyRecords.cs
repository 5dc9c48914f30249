using System.Collections.Immutable;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.ApiKeys;

/// <summary>Stored-record manifests and protobuf mappings of the API-key registry.</summary>
public static class ApiKeyRecords
{
    public static RecordCodecs AddApiKeyRecords(this RecordCodecs codecs) => codecs
        .Add<ApiKeyIssued, Stored.ApiKeyIssued>("key.issued",
            e => ToStored(new ApiKeyRecord(e.KeyId, e.Scope, e.SecretHash, e.At, e.TailnetId, e.Description)),
            p => new(p.KeyId, (ApiKeyScope)p.Scope, p.SecretHash, p.At.ToTime(), NullIfEmpty(p.TailnetId), p.Description))
        .Add<ApiKeyRevoked, Stored.ApiKeyRevoked>("key.revoked", e => new() { KeyId = e.KeyId }, p => new(p.KeyId))
        .Add<ApiKeyRegistryState, Stored.ApiKeyRegistrySnapshot>("key.snapshot",
            s => new() { Keys = { s.Keys.Values.Select(ToStored) }, RevokedKeyIds = { s.RevokedKeyIds } },
            p => new ApiKeyRegistryState(p.Keys.ToImmutableSortedDictionary(
                k => k.KeyId, k => new ApiKeyRecord(k.KeyId, (ApiKeyScope)k.Scope, k.SecretHash, k.At.ToTime(), NullIfEmpty(k.TailnetId), k.Description)),
                p.RevokedKeyIds.ToImmutableSortedSet(StringComparer.Ordinal)));

    private static Stored.ApiKeyIssued ToStored(ApiKeyRecord k) => new()
    {
        KeyId = k.KeyId, Scope = (int)k.Scope, SecretHash = k.SecretHash, At = k.IssuedAt.ToStored(), TailnetId = k.TailnetId ?? "", Description = k.Description,
    };

    private static string? NullIfEmpty(string value) => value.Length == 0 ? null : value;
}
