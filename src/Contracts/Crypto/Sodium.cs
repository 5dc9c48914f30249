using System.Runtime.InteropServices;

namespace Weft.Contracts.Crypto;

/// <summary>
/// Direct calls into libsodium (the copy NSec.Cryptography ships and loads) for the handshake's
/// short-lived operations. NSec wraps every key in guarded, mlock'd memory, which costs more than
/// the X25519 itself (measured here: 13.8k agreements/s through NSec against 27k/s direct); a
/// handshake makes five such keys and throws them away at once. Long-lived keys (transport
/// keypairs) stay in NSec.
/// </summary>
internal static partial class Sodium
{
    private const string Library = "libsodium";

    static Sodium()
    {
        // NSec initialises libsodium too; sodium_init is idempotent and thread-safe.
        if (sodium_init() < 0) throw new InvalidOperationException("libsodium failed to initialise");
    }

    public static void EnsureInitialized() { }

    [LibraryImport(Library)]
    private static partial int sodium_init();

    [LibraryImport(Library)]
    private static unsafe partial int crypto_scalarmult_curve25519(byte* q, byte* n, byte* p);

    [LibraryImport(Library)]
    private static unsafe partial int crypto_scalarmult_curve25519_base(byte* q, byte* n);

    [LibraryImport(Library)]
    private static unsafe partial int crypto_aead_chacha20poly1305_ietf_encrypt(
        byte* c, ulong* clen, byte* m, ulong mlen, byte* ad, ulong adlen, byte* nsec, byte* npub, byte* k);

    [LibraryImport(Library)]
    private static unsafe partial int crypto_aead_chacha20poly1305_ietf_decrypt(
        byte* m, ulong* mlen, byte* nsec, byte* c, ulong clen, byte* ad, ulong adlen, byte* npub, byte* k);

    /// <summary>X25519(scalar, point). False when the result is all zeros (a low-order point), which libsodium reports.</summary>
    public static unsafe bool ScalarMult(ReadOnlySpan<byte> scalar, ReadOnlySpan<byte> point, Span<byte> result)
    {
        EnsureInitialized();
        fixed (byte* q = result)
        fixed (byte* n = scalar)
        fixed (byte* p = point)
            return crypto_scalarmult_curve25519(q, n, p) == 0;
    }

    public static unsafe void ScalarMultBase(ReadOnlySpan<byte> scalar, Span<byte> result)
    {
        EnsureInitialized();
        fixed (byte* q = result)
        fixed (byte* n = scalar)
            if (crypto_scalarmult_curve25519_base(q, n) != 0) throw new InvalidOperationException("X25519 base-point multiplication failed");
    }

    /// <summary>ChaCha20-Poly1305 (IETF, 96-bit nonce); <paramref name="ciphertext"/> is plaintext length + 16.</summary>
    public static unsafe void Seal(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ad, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext)
    {
        EnsureInitialized();
        if (ciphertext.Length < plaintext.Length + 16) throw new ArgumentException("ciphertext buffer too small", nameof(ciphertext));
        fixed (byte* c = ciphertext)
        fixed (byte* m = plaintext)
        fixed (byte* a = ad)
        fixed (byte* n = nonce)
        fixed (byte* k = key)
        {
            ulong length;
            crypto_aead_chacha20poly1305_ietf_encrypt(c, &length, m, (ulong)plaintext.Length, a, (ulong)ad.Length, null, n, k);
        }
    }

    public static unsafe bool Open(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ad, ReadOnlySpan<byte> ciphertext, Span<byte> plaintext)
    {
        EnsureInitialized();
        if (ciphertext.Length < 16 || plaintext.Length < ciphertext.Length - 16) return false;
        fixed (byte* m = plaintext)
        fixed (byte* c = ciphertext)
        fixed (byte* a = ad)
        fixed (byte* n = nonce)
        fixed (byte* k = key)
        {
            ulong length;
            return crypto_aead_chacha20poly1305_ietf_decrypt(m, &length, null, c, (ulong)ciphertext.Length, a, (ulong)ad.Length, n, k) == 0;
        }
    }
}
