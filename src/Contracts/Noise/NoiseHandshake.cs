using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Weft.Contracts.Crypto;
using Weft.Contracts.Keys;

namespace Weft.Contracts.Noise;

/// <summary>The two Noise handshakes Weft speaks. Both use Curve25519, ChaCha20-Poly1305 and BLAKE2s.</summary>
public enum NoisePattern
{
    /// <summary><c>Noise_IK_25519_ChaChaPoly_BLAKE2s</c>: the control channel (machine key to coordinator key).</summary>
    IK,

    /// <summary><c>Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s</c>: WireGuard (psk = 32 zero bytes when none is set).</summary>
    IKpsk2,
}

/// <summary>
/// Supplies the static-static secret DH(local static, remote static) from a cache, or returns false
/// so the handshake computes it. It never changes for a pair of keys; WireGuard precomputes it.
/// </summary>
public delegate bool StaticSecretSource(Curve25519PublicKey remoteStatic, Span<byte> shared);

/// <summary>
/// One Noise IK or IKpsk2 handshake (Noise spec rev. 34), from either side:
/// <code>
///   &lt;- s
///   ...
///   -&gt; e, es, s, ss
///   &lt;- e, ee, se [, psk]
/// </code>
/// The initiator knows the responder's static key in advance. The responder learns the
/// initiator's static key from message 1 (<see cref="RemoteStatic"/>) and may then set the PSK
/// that belongs to that peer before writing message 2.
/// </summary>
public sealed class NoiseHandshake : IDisposable
{
    public const int DhSize = 32;
    public const int HashSize = 32;
    public const int TagSize = 16;

    /// <summary>Message 1 is e ‖ enc(s) ‖ enc(payload).</summary>
    public static int InitiationSize(int payloadLength) => DhSize + DhSize + TagSize + payloadLength + TagSize;

    /// <summary>Message 2 is e ‖ enc(payload).</summary>
    public static int ResponseSize(int payloadLength) => DhSize + payloadLength + TagSize;

    private readonly NoisePattern _pattern;
    private readonly bool _initiator;
    private readonly Curve25519PrivateKey _localStatic;
    private readonly Curve25519PrivateKey? _fixedEphemeral;
    private readonly StaticSecretSource? _staticSecrets;
    private Curve25519PrivateKey? _localEphemeral;
    private readonly byte[] _psk = new byte[32];

    // Symmetric state (Noise §5.2).
    private readonly byte[] _ck = new byte[HashSize];
    private readonly byte[] _h = new byte[HashSize];
    private readonly byte[] _k = new byte[32];
    private bool _hasKey;
    private ulong _n;

    private int _step;

    private NoiseHandshake(NoisePattern pattern, bool initiator, ReadOnlySpan<byte> prologue, Curve25519PrivateKey localStatic,
        Curve25519PublicKey? remoteStatic, ReadOnlySpan<byte> psk, Curve25519PrivateKey? fixedEphemeral, StaticSecretSource? staticSecrets)
    {
        _staticSecrets = staticSecrets;
        _pattern = pattern;
        _initiator = initiator;
        _localStatic = localStatic;
        _fixedEphemeral = fixedEphemeral;
        if (!psk.IsEmpty)
        {
            if (psk.Length != 32) throw new ArgumentException("a Noise PSK is 32 bytes", nameof(psk));
            psk.CopyTo(_psk);
        }

        InitializeSymmetric(ProtocolName(pattern));
        MixHash(prologue);
        // Pre-message "<- s": both sides hash the responder's static key.
        Span<byte> responderStatic = stackalloc byte[DhSize];
        if (initiator)
        {
            RemoteStatic = remoteStatic ?? throw new ArgumentException("IK needs the responder's static key", nameof(remoteStatic));
            RemoteStatic.CopyTo(responderStatic);
        }
        else
        {
            localStatic.PublicKey.CopyTo(responderStatic);
        }
        MixHash(responderStatic);
    }

    public static string ProtocolName(NoisePattern pattern) => pattern switch
    {
        NoisePattern.IK => "Noise_IK_25519_ChaChaPoly_BLAKE2s",
        NoisePattern.IKpsk2 => "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s",
        _ => throw new ArgumentOutOfRangeException(nameof(pattern)),
    };

    /// <param name="fixedEphemeral">Only for test vectors; real handshakes generate a fresh ephemeral.</param>
    public static NoiseHandshake Initiator(NoisePattern pattern, ReadOnlySpan<byte> prologue, Curve25519PrivateKey localStatic,
        Curve25519PublicKey remoteStatic, ReadOnlySpan<byte> psk = default, Curve25519PrivateKey? fixedEphemeral = null,
        StaticSecretSource? staticSecrets = null) =>
        new(pattern, true, prologue, localStatic, remoteStatic, psk, fixedEphemeral, staticSecrets);

    public static NoiseHandshake Responder(NoisePattern pattern, ReadOnlySpan<byte> prologue, Curve25519PrivateKey localStatic,
        ReadOnlySpan<byte> psk = default, Curve25519PrivateKey? fixedEphemeral = null, StaticSecretSource? staticSecrets = null) =>
        new(pattern, false, prologue, localStatic, null, psk, fixedEphemeral, staticSecrets);

    /// <summary>The peer's static key: known up front by the initiator, learned from message 1 by the responder.</summary>
    public Curve25519PublicKey RemoteStatic { get; private set; }

    public Curve25519PublicKey RemoteEphemeral { get; private set; }

    public Curve25519PublicKey LocalEphemeral => _localEphemeral?.PublicKey ?? default;

    /// <summary>The handshake hash h, after the messages so far (channel binding).</summary>
    public ReadOnlySpan<byte> HandshakeHash => _h;

    public bool IsComplete => _step == 2;

    /// <summary>The responder sets the initiator's PSK here, after reading message 1 and looking the peer up.</summary>
    public void SetPresharedKey(ReadOnlySpan<byte> psk)
    {
        if (psk.Length != 32) throw new ArgumentException("a Noise PSK is 32 bytes", nameof(psk));
        psk.CopyTo(_psk);
    }

    /// <summary>Writes the next handshake message; returns its length, or -1 if a DH result was invalid.</summary>
    public int WriteMessage(ReadOnlySpan<byte> payload, Span<byte> message)
    {
        Span<byte> dh = stackalloc byte[DhSize];
        try
        {
            if (_step == 0 && _initiator)
            {
                if (message.Length < InitiationSize(payload.Length)) throw new ArgumentException("message buffer too small", nameof(message));
                var offset = WriteEphemeral(message);
                if (!_localEphemeral!.TryAgree(RemoteStatic, dh)) return -1;                 // es
                MixKey(dh);
                Span<byte> staticPublic = stackalloc byte[DhSize];
                _localStatic.PublicKey.CopyTo(staticPublic);
                offset += EncryptAndHash(staticPublic, message[offset..]);                     // s
                if (!StaticStatic(dh)) return -1;                                            // ss
                MixKey(dh);
                offset += EncryptAndHash(payload, message[offset..]);
                _step = 1;
                return offset;
            }
            if (_step == 1 && !_initiator)
            {
                if (message.Length < ResponseSize(payload.Length)) throw new ArgumentException("message buffer too small", nameof(message));
                var offset = WriteEphemeral(message);
                if (!_localEphemeral!.TryAgree(RemoteEphemeral, dh)) return -1;              // ee
                MixKey(dh);
                if (!_localEphemeral.TryAgree(RemoteStatic, dh)) return -1;                  // se
                MixKey(dh);
                if (_pattern == NoisePattern.IKpsk2) MixKeyAndHash(_psk);                     // psk
                offset += EncryptAndHash(payload, message[offset..]);
                _step = 2;
                return offset;
            }
            throw new InvalidOperationException($"it is not this side's turn to write (step {_step}, {(_initiator ? "initiator" : "responder")})");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dh);
        }
    }

    /// <summary>
    /// Reads the next handshake message into <paramref name="payload"/>; returns the payload length,
    /// or -1 if it does not authenticate. A message that fails leaves the handshake exactly as it
    /// was, so a forged message cannot spoil a handshake in progress.
    /// </summary>
    public int ReadMessage(ReadOnlySpan<byte> message, Span<byte> payload)
    {
        var saved = Save();
        var read = ReadMessageOrFail(message, payload);
        if (read < 0) Restore(saved);
        return read;
    }

    private readonly record struct SavedState(byte[] Ck, byte[] H, byte[] K, bool HasKey, ulong N, Curve25519PublicKey RemoteStatic, Curve25519PublicKey RemoteEphemeral);

    private SavedState Save() => new((byte[])_ck.Clone(), (byte[])_h.Clone(), (byte[])_k.Clone(), _hasKey, _n, RemoteStatic, RemoteEphemeral);

    private void Restore(SavedState saved)
    {
        saved.Ck.CopyTo(_ck, 0);
        saved.H.CopyTo(_h, 0);
        saved.K.CopyTo(_k, 0);
        _hasKey = saved.HasKey;
        _n = saved.N;
        RemoteStatic = saved.RemoteStatic;
        RemoteEphemeral = saved.RemoteEphemeral;
        CryptographicOperations.ZeroMemory(saved.Ck);
        CryptographicOperations.ZeroMemory(saved.K);
    }

    private int ReadMessageOrFail(ReadOnlySpan<byte> message, Span<byte> payload)
    {
        Span<byte> dh = stackalloc byte[DhSize];
        try
        {
            if (_step == 0 && !_initiator)
            {
                if (message.Length < InitiationSize(0)) return -1;
                var offset = ReadEphemeral(message);
                if (!_localStatic.TryAgree(RemoteEphemeral, dh)) return -1;                  // es
                MixKey(dh);
                Span<byte> staticPublic = stackalloc byte[DhSize];
                if (!DecryptAndHash(message.Slice(offset, DhSize + TagSize), staticPublic)) return -1; // s
                offset += DhSize + TagSize;
                RemoteStatic = new Curve25519PublicKey(staticPublic);
                if (!StaticStatic(dh)) return -1;                                            // ss
                MixKey(dh);
                var payloadLength = message.Length - offset - TagSize;
                if (payload.Length < payloadLength || !DecryptAndHash(message[offset..], payload[..payloadLength])) return -1;
                _step = 1;
                return payloadLength;
            }
            if (_step == 1 && _initiator)
            {
                if (message.Length < ResponseSize(0)) return -1;
                var offset = ReadEphemeral(message);
                if (!_localEphemeral!.TryAgree(RemoteEphemeral, dh)) return -1;              // ee
                MixKey(dh);
                if (!_localStatic.TryAgree(RemoteEphemeral, dh)) return -1;                  // se
                MixKey(dh);
                if (_pattern == NoisePattern.IKpsk2) MixKeyAndHash(_psk);                     // psk
                var payloadLength = message.Length - offset - TagSize;
                if (payload.Length < payloadLength || !DecryptAndHash(message[offset..], payload[..payloadLength])) return -1;
                _step = 2;
                return payloadLength;
            }
            throw new InvalidOperationException($"it is not this side's turn to read (step {_step}, {(_initiator ? "initiator" : "responder")})");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dh);
        }
    }

    /// <summary>
    /// The transport keys once both messages are done: Noise's Split, (k1, k2) = HKDF(ck, ε).
    /// The initiator sends with k1 and receives with k2; the responder the other way round.
    /// </summary>
    public void Split(Span<byte> sendKey, Span<byte> receiveKey)
    {
        if (!IsComplete) throw new InvalidOperationException("the handshake is not complete");
        if (_initiator) Kdf.Derive(_ck, default, sendKey, receiveKey);
        else Kdf.Derive(_ck, default, receiveKey, sendKey);
    }

    public void Dispose()
    {
        CryptographicOperations.ZeroMemory(_ck);
        CryptographicOperations.ZeroMemory(_k);
        CryptographicOperations.ZeroMemory(_psk);
        if (_localEphemeral != _fixedEphemeral) _localEphemeral?.Dispose();
    }

    private bool StaticStatic(Span<byte> dh) =>
        (_staticSecrets is not null && _staticSecrets(RemoteStatic, dh)) || _localStatic.TryAgree(RemoteStatic, dh);

    private int WriteEphemeral(Span<byte> message)
    {
        _localEphemeral = _fixedEphemeral ?? Curve25519PrivateKey.Generate();
        _localEphemeral.PublicKey.CopyTo(message);
        MixHash(message[..DhSize]);
        if (_pattern == NoisePattern.IKpsk2) MixKey(message[..DhSize]); // psk modifier: "e" also mixes the key
        return DhSize;
    }

    private int ReadEphemeral(ReadOnlySpan<byte> message)
    {
        RemoteEphemeral = new Curve25519PublicKey(message[..DhSize]);
        MixHash(message[..DhSize]);
        if (_pattern == NoisePattern.IKpsk2) MixKey(message[..DhSize]);
        return DhSize;
    }

    private void InitializeSymmetric(string protocolName)
    {
        var name = Encoding.ASCII.GetBytes(protocolName);
        if (name.Length <= HashSize) name.CopyTo(_h, 0);
        else Blake2s.Hash(name, _h);
        _h.CopyTo(_ck, 0);
        _hasKey = false;
    }

    private void MixHash(ReadOnlySpan<byte> data) => Blake2s.Hash(_h, data, _h);

    private void MixKey(ReadOnlySpan<byte> input)
    {
        Kdf.Derive(_ck, input, _ck, _k);
        _hasKey = true;
        _n = 0;
    }

    private void MixKeyAndHash(ReadOnlySpan<byte> input)
    {
        Span<byte> tempH = stackalloc byte[HashSize];
        Kdf.Derive(_ck, input, _ck, tempH, _k);
        MixHash(tempH);
        _hasKey = true;
        _n = 0;
    }

    private int EncryptAndHash(ReadOnlySpan<byte> plaintext, Span<byte> output)
    {
        if (!_hasKey)
        {
            plaintext.CopyTo(output);
            MixHash(output[..plaintext.Length]);
            return plaintext.Length;
        }
        var length = plaintext.Length + TagSize;
        Span<byte> nonce = stackalloc byte[12];
        NonceFor(_n++, nonce);
        Sodium.Seal(_k, nonce, _h, plaintext, output[..length]);
        MixHash(output[..length]);
        return length;
    }

    private bool DecryptAndHash(ReadOnlySpan<byte> ciphertext, Span<byte> plaintext)
    {
        if (!_hasKey)
        {
            ciphertext.CopyTo(plaintext);
            MixHash(ciphertext);
            return true;
        }
        Span<byte> nonce = stackalloc byte[12];
        NonceFor(_n, nonce);
        if (!Sodium.Open(_k, nonce, _h, ciphertext, plaintext[..(ciphertext.Length - TagSize)])) return false;
        _n++;
        MixHash(ciphertext);
        return true;
    }

    /// <summary>ChaChaPoly's Noise nonce: 32 zero bits, then the 64-bit counter little-endian (WireGuard's too).</summary>
    public static void NonceFor(ulong counter, Span<byte> nonce12)
    {
        nonce12[..4].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(nonce12[4..], counter);
    }
}
