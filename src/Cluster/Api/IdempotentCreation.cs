using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.Control;

namespace Weft.Cluster.Api;

/// <summary>
/// Safe retries of creations. A request that creates something (a tailnet, a user, an auth key, an
/// API key) may carry an <c>Idempotency-Key</c> header. The ids of what it creates — and for keys,
/// their secrets — then derive from that header, the caller's API key and what is being created, so
/// the same request sent again after a timeout or a cut connection names the same object: the entity
/// finds it already there and answers as it did the first time, secret included. Nothing is stored
/// for this; the objects themselves are the record. Once an object is gone the header stays spent: a
/// revoked API key's id is kept and never issued again, and a deleted tailnet's entity refuses to be
/// created again, so a late retry cannot bring back a revoked secret or a deleted tenant (409).
/// <para>
/// The derivation is an HMAC under a secret derived from the cluster's coordinator key (shared by
/// every node, never leaving the cluster), so nobody outside the cluster can predict the secret of a
/// key created this way, and another caller using the same header gets a different object.
/// </para>
/// </summary>
public sealed class IdempotentCreation(CoordinatorIdentity identity)
{
    public const string Header = "Idempotency-Key";
    public const int MaxLength = 255;

    private byte[]? _secret;

    /// <summary>The id source for one creation: derived when the request has an Idempotency-Key, random otherwise.</summary>
    /// <param name="what">What is created and where (e.g. "auth-key tn_abc"): the same header creating something else gets other ids.</param>
    public async Task<IdSource> IdsFor(HttpContext http, string what)
    {
        var header = http.Request.Headers[Header].ToString();
        if (string.IsNullOrEmpty(header)) return IdSource.Random;
        if (header.Length > MaxLength || header.Any(char.IsControl))
            throw ApiException.Invalid($"the {Header} header must be 1-{MaxLength} printable characters");
        var caller = ApiCaller.Of(http);
        var message = Encoding.UTF8.GetBytes($"{caller.KeyId}\n{what}\n{header}");
        return IdSource.Derived(HMACSHA256.HashData(await Secret(), message));
    }

    private async Task<byte[]> Secret()
    {
        if (_secret is { } known) return known;
        var key = await identity.Key;
        var material = new byte[32];
        key.CopyTo(material);
        try
        {
            return _secret = HKDF.DeriveKey(HashAlgorithmName.SHA256, material, 32, info: Encoding.ASCII.GetBytes("weft idempotent creation v1"));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(material);
        }
    }
}
