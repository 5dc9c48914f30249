using System.Security.Cryptography;
using NSec.Cryptography;
using Weft.Contracts.Keys;

namespace Weft.Contracts.Crypto;

/// <summary>
/// Weft's public-key box, used where Tailscale uses a NaCl box (relay login, disco): the two
/// parties' X25519 shared secret, hashed with BLAKE2s together with both public keys (in byte
/// order, so that both directions derive the same key) and a label, keys NSec's
/// XChaCha20-Poly1305. A sealed message is a 24-byte random nonce, then the ciphertext with its
/// 16-byte tag: <see cref="Overhead"/> bytes more than the plaintext.
/// <para>One instance holds one pair's key; it is safe to use from several threads.</para>
/// </summary>
public sealed class SealedBox : IDisposable
{
    public const int NonceSize = 24;
    public const int TagSize = 16;
    public const int Overhead = NonceSize + TagSize;

    private static readonly AeadAlgorithm Aead = AeadAlgorithm.XChaCha20Poly1305;
    private static readonly byte[] Label = "weft box v1"u8.ToArray();
    private readonly Key _key;

    private SealedBox(Key key) => _key = key;

    /// <summary>The box between <paramref name="own"/> and <paramref name="peer"/>; null if the peer key is a low-order point.</summary>
    public static SealedBox? Between(Curve25519PrivateKey own, Curve25519PublicKey peer)
    {
        Span<byte> shared = stackalloc byte[32];
        try
        {
            if (!own.TryAgree(peer, shared)) return null;
            Span<byte> lower = stackalloc byte[32], upper = stackalloc byte[32];
            own.PublicKey.CopyTo(lower);
            peer.CopyTo(upper);
            if (lower.SequenceCompareTo(upper) > 0)
            {
                own.PublicKey.CopyTo(upper);
                peer.CopyTo(lower);
            }
            var hash = new Blake2s(32, shared);
            hash.Update(Label);
            hash.Update(lower);
            hash.Update(upper);
            Span<byte> secret = stackalloc byte[32];
            hash.Finish(secret);
            var key = Key.Import(Aead, secret, KeyBlobFormat.RawSymmetricKey);
            CryptographicOperations.ZeroMemory(secret);
            return new SealedBox(key);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(shared);
        }
    }

    public byte[] Seal(ReadOnlySpan<byte> plaintext)
    {
        var sealedMessage = new byte[plaintext.Length + Overhead];
        Seal(plaintext, sealedMessage);
        return sealedMessage;
    }

    /// <summary>Seals into <paramref name="destination"/>, which must hold plaintext + <see cref="Overhead"/> bytes.</summary>
    public void Seal(ReadOnlySpan<byte> plaintext, Span<byte> destination)
    {
        var nonce = destination[..NonceSize];
        RandomNumberGenerator.Fill(nonce);
        Aead.Encrypt(_key, nonce, default, plaintext, destination.Slice(NonceSize, plaintext.Length + TagSize));
    }

    /// <summary>The plaintext, or null if the message is too short or does not authenticate.</summary>
    public byte[]? Open(ReadOnlySpan<byte> sealedMessage)
    {
        if (sealedMessage.Length < Overhead) return null;
        var plaintext = new byte[sealedMessage.Length - Overhead];
        return Aead.Decrypt(_key, sealedMessage[..NonceSize], default, sealedMessage[NonceSize..], plaintext) ? plaintext : null;
    }

    public void Dispose() => _key.Dispose();
}
