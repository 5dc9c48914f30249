using System.Security.Cryptography;
using Weft.Contracts.Crypto;

namespace Weft.Contracts.Keys;

/// <summary>
/// A Curve25519 private key; X25519 through libsodium. Clamped on import, as WireGuard does:
/// <c>k[0] &amp;= 248; k[31] = (k[31] &amp; 127) | 64</c>. The bytes are zeroed on dispose.
/// </summary>
public sealed class Curve25519PrivateKey : IDisposable
{
    public const int Size = 32;

    private readonly byte[] _scalar = GC.AllocateUninitializedArray<byte>(Size, pinned: true);

    private Curve25519PrivateKey(ReadOnlySpan<byte> scalar)
    {
        scalar.CopyTo(_scalar);
        Clamp(_scalar);
        Span<byte> pub = stackalloc byte[Curve25519PublicKey.Size];
        Sodium.ScalarMultBase(_scalar, pub);
        PublicKey = new Curve25519PublicKey(pub);
    }

    public Curve25519PublicKey PublicKey { get; }

    public static Curve25519PrivateKey Generate()
    {
        Span<byte> random = stackalloc byte[Size];
        RandomNumberGenerator.Fill(random);
        var key = new Curve25519PrivateKey(random);
        CryptographicOperations.ZeroMemory(random);
        return key;
    }

    public static Curve25519PrivateKey FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size) throw new ArgumentException($"a Curve25519 private key is {Size} bytes, got {bytes.Length}", nameof(bytes));
        return new Curve25519PrivateKey(bytes);
    }

    public static bool TryParseBase64(string? text, out Curve25519PrivateKey key)
    {
        Span<byte> bytes = stackalloc byte[Size];
        key = KeyEncoding.TryDecodeBase64(text, bytes) ? FromBytes(bytes) : null!;
        CryptographicOperations.ZeroMemory(bytes);
        return key is not null;
    }

    public static bool TryParseHex(string? text, out Curve25519PrivateKey key)
    {
        Span<byte> bytes = stackalloc byte[Size];
        key = KeyEncoding.TryDecodeHex(text, bytes) ? FromBytes(bytes) : null!;
        CryptographicOperations.ZeroMemory(bytes);
        return key is not null;
    }

    public static void Clamp(Span<byte> key)
    {
        key[0] &= 248;
        key[31] = (byte)((key[31] & 127) | 64);
    }

    public void CopyTo(Span<byte> destination) => _scalar.CopyTo(destination);

    public string ToBase64() => Convert.ToBase64String(_scalar);

    public string ToHex() => Convert.ToHexStringLower(_scalar);

    /// <summary>
    /// X25519(this, peer) into <paramref name="shared32"/>. False when the result is all zeros
    /// (a low-order peer key), which WireGuard treats as an invalid public key.
    /// </summary>
    public bool TryAgree(Curve25519PublicKey peer, Span<byte> shared32)
    {
        Span<byte> point = stackalloc byte[Curve25519PublicKey.Size];
        peer.CopyTo(point);
        return Sodium.ScalarMult(_scalar, point, shared32);
    }

    public override string ToString() => "privkey:<redacted>";

    public void Dispose() => CryptographicOperations.ZeroMemory(_scalar);
}
