using System.Security.Cryptography;
using NSec.Cryptography;

namespace Weft.Contracts.Keys;

/// <summary>
/// A Curve25519 private key (X25519 through libsodium, via NSec). Clamped on import, as WireGuard
/// does: <c>k[0] &amp;= 248; k[31] = (k[31] &amp; 127) | 64</c>.
/// </summary>
public sealed class Curve25519PrivateKey : IDisposable
{
    public const int Size = 32;

    private static readonly KeyAgreementAlgorithm X25519 = KeyAgreementAlgorithm.X25519;
    private static KeyCreationParameters Exportable => new() { ExportPolicy = KeyExportPolicies.AllowPlaintextExport };
    private static SharedSecretCreationParameters ExportableSecret => new() { ExportPolicy = KeyExportPolicies.AllowPlaintextExport };

    private readonly Key _key;

    private Curve25519PrivateKey(Key key)
    {
        _key = key;
        Span<byte> pub = stackalloc byte[Curve25519PublicKey.Size];
        key.PublicKey.TryExport(KeyBlobFormat.RawPublicKey, pub, out _);
        PublicKey = new Curve25519PublicKey(pub);
    }

    public Curve25519PublicKey PublicKey { get; }

    public static Curve25519PrivateKey Generate() => new(Key.Create(X25519, Exportable));

    public static Curve25519PrivateKey FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size) throw new ArgumentException($"a Curve25519 private key is {Size} bytes, got {bytes.Length}", nameof(bytes));
        Span<byte> clamped = stackalloc byte[Size];
        bytes.CopyTo(clamped);
        Clamp(clamped);
        try
        {
            return new Curve25519PrivateKey(Key.Import(X25519, clamped, KeyBlobFormat.RawPrivateKey, Exportable));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(clamped);
        }
    }

    public static bool TryParseBase64(string? text, out Curve25519PrivateKey key)
    {
        key = null!;
        Span<byte> bytes = stackalloc byte[Size];
        if (text is null || text.Length != 44 || !Convert.TryFromBase64String(text, bytes, out var written) || written != Size) return false;
        key = FromBytes(bytes);
        CryptographicOperations.ZeroMemory(bytes);
        return true;
    }

    public static bool TryParseHex(string? text, out Curve25519PrivateKey key)
    {
        key = null!;
        if (text is null || text.Length != Size * 2) return false;
        Span<byte> bytes = stackalloc byte[Size];
        if (Convert.FromHexString(text, bytes, out _, out var written) != System.Buffers.OperationStatus.Done || written != Size) return false;
        key = FromBytes(bytes);
        CryptographicOperations.ZeroMemory(bytes);
        return true;
    }

    public static void Clamp(Span<byte> key)
    {
        key[0] &= 248;
        key[31] = (byte)((key[31] & 127) | 64);
    }

    public void CopyTo(Span<byte> destination) => _key.TryExport(KeyBlobFormat.RawPrivateKey, destination, out _);

    public string ToBase64()
    {
        Span<byte> bytes = stackalloc byte[Size];
        CopyTo(bytes);
        var text = Convert.ToBase64String(bytes);
        CryptographicOperations.ZeroMemory(bytes);
        return text;
    }

    public string ToHex()
    {
        Span<byte> bytes = stackalloc byte[Size];
        CopyTo(bytes);
        var text = Convert.ToHexStringLower(bytes);
        CryptographicOperations.ZeroMemory(bytes);
        return text;
    }

    /// <summary>
    /// X25519(this, peer) into <paramref name="shared32"/>. False when the result is all zeros
    /// (a low-order peer key), which WireGuard treats as an invalid public key.
    /// </summary>
    public bool TryAgree(Curve25519PublicKey peer, Span<byte> shared32)
    {
        Span<byte> raw = stackalloc byte[Curve25519PublicKey.Size];
        peer.CopyTo(raw);
        if (!NSec.Cryptography.PublicKey.TryImport(X25519, raw, KeyBlobFormat.RawPublicKey, out var peerKey)) return false;
        using var secret = X25519.Agree(_key, peerKey!, ExportableSecret);
        if (secret is null) return false;
        return secret.TryExport(SharedSecretBlobFormat.RawSharedSecret, shared32, out var written) && written == Size;
    }

    public override string ToString() => "privkey:<redacted>";

    public void Dispose() => _key.Dispose();
}
