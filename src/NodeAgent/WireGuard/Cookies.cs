using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using NSec.Cryptography;
using Weft.Contracts.Crypto;

namespace Weft.NodeAgent.WireGuard;

/// <summary>
/// The receiving side of mac1/mac2 (wireguard-go cookie.go CookieChecker): mac1 proves the sender
/// knows our public key; under load, mac2 proves it can receive at its claimed address, because
/// it must echo a cookie we sent there.
/// </summary>
public sealed class CookieChecker
{
    private static readonly byte[] LabelMac1 = Encoding.ASCII.GetBytes("mac1----");
    private static readonly byte[] LabelCookie = Encoding.ASCII.GetBytes("cookie--");
    private static readonly AeadAlgorithm XChaChaPoly = AeadAlgorithm.XChaCha20Poly1305;

    private readonly object _lock = new();
    private readonly byte[] _mac1Key = new byte[32];
    private readonly byte[] _cookieKey = new byte[32];
    private readonly byte[] _secret = new byte[32];
    private long _secretSetMs;
    private readonly EngineClock _clock;

    public CookieChecker(EngineClock clock) => _clock = clock;

    /// <summary>Derives the mac1 and cookie keys from our static public key.</summary>
    public void SetStaticKey(Weft.Contracts.Keys.Curve25519PublicKey publicKey)
    {
        Span<byte> pub = stackalloc byte[32];
        publicKey.CopyTo(pub);
        lock (_lock)
        {
            Blake2s.Hash(LabelMac1, pub, _mac1Key);
            Blake2s.Hash(LabelCookie, pub, _cookieKey);
        }
    }

    public bool CheckMac1(ReadOnlySpan<byte> message, uint type)
    {
        var offset = Messages.Mac1Offset(type);
        Span<byte> mac = stackalloc byte[Messages.MacSize];
        lock (_lock) Blake2s.Mac(_mac1Key, message[..offset], mac);
        return CryptographicOperations.FixedTimeEquals(mac, message.Slice(offset, Messages.MacSize));
    }

    /// <summary>True if mac2 carries the cookie we would give <paramref name="source"/> now.</summary>
    public bool CheckMac2(ReadOnlySpan<byte> message, uint type, IPEndPoint source)
    {
        Span<byte> cookie = stackalloc byte[Messages.MacSize];
        lock (_lock)
        {
            if (_clock.NowMs - _secretSetMs > Constants.CookieRefreshTime.TotalMilliseconds) return false;
            CookieFor(source, cookie);
        }
        var offset = Messages.Mac2Offset(type);
        Span<byte> mac = stackalloc byte[Messages.MacSize];
        Blake2s.Mac(cookie, message[..offset], mac);
        return CryptographicOperations.FixedTimeEquals(mac, message.Slice(offset, Messages.MacSize));
    }

    /// <summary>Writes a 64-byte cookie reply to a handshake message from <paramref name="source"/>.</summary>
    public void CreateReply(ReadOnlySpan<byte> message, uint type, IPEndPoint source, Span<byte> reply)
    {
        var senderIndex = Messages.ReadIndex(message, 4);
        Span<byte> cookie = stackalloc byte[Messages.MacSize];
        lock (_lock)
        {
            if (_clock.NowMs - _secretSetMs > Constants.CookieRefreshTime.TotalMilliseconds)
            {
                RandomNumberGenerator.Fill(_secret);
                _secretSetMs = _clock.NowMs;
            }
            CookieFor(source, cookie);
        }

        Messages.WriteHeader(reply, Messages.TypeCookieReply);
        Messages.WriteIndex(reply, Messages.CookieReceiver, senderIndex);
        var nonce = reply.Slice(Messages.CookieNonce, 24);
        RandomNumberGenerator.Fill(nonce);
        using var key = Key.Import(XChaChaPoly, _cookieKey, KeyBlobFormat.RawSymmetricKey);
        var mac1 = message.Slice(Messages.Mac1Offset(type), Messages.MacSize);
        XChaChaPoly.Encrypt(key, nonce, mac1, cookie, reply.Slice(Messages.CookieEncrypted, 32));
    }

    // The address encoding is private to us (only we verify it): IP bytes, then the port little-endian.
    private void CookieFor(IPEndPoint source, Span<byte> cookie)
    {
        Span<byte> address = stackalloc byte[18];
        source.Address.TryWriteBytes(address, out var length);
        BinaryPrimitives.WriteUInt16LittleEndian(address[length..], (ushort)source.Port);
        Blake2s.Mac(_secret, address[..(length + 2)], cookie);
    }
}

/// <summary>
/// The sending side (wireguard-go CookieGenerator), one per peer: adds mac1 to every handshake
/// message, and mac2 while we hold a cookie from the peer that is less than 120 s old.
/// </summary>
public sealed class CookieGenerator(byte[] mac1Key, byte[] cookieKey)
{
    private static readonly AeadAlgorithm XChaChaPoly = AeadAlgorithm.XChaCha20Poly1305;

    private readonly object _lock = new();
    private readonly byte[] _cookie = new byte[Messages.MacSize];
    private long _cookieSetMs;
    private bool _hasCookie;
    private readonly byte[] _lastMac1 = new byte[Messages.MacSize];
    private bool _hasLastMac1;

    public void AddMacs(Span<byte> message, uint type, long nowMs)
    {
        var mac1Offset = Messages.Mac1Offset(type);
        var mac2Offset = Messages.Mac2Offset(type);
        lock (_lock)
        {
            Blake2s.Mac(mac1Key, message[..mac1Offset], message.Slice(mac1Offset, Messages.MacSize));
            message.Slice(mac1Offset, Messages.MacSize).CopyTo(_lastMac1);
            _hasLastMac1 = true;
            var mac2 = message.Slice(mac2Offset, Messages.MacSize);
            if (_hasCookie && nowMs - _cookieSetMs < Constants.CookieRefreshTime.TotalMilliseconds) Blake2s.Mac(_cookie, message[..mac2Offset], mac2);
            else mac2.Clear();
        }
    }

    /// <summary>Takes the cookie from a reply to the last message we sent; false if it does not decrypt.</summary>
    public bool ConsumeReply(ReadOnlySpan<byte> reply, long nowMs)
    {
        if (reply.Length != Messages.CookieReplySize) return false;
        lock (_lock)
        {
            if (!_hasLastMac1) return false;
            Span<byte> cookie = stackalloc byte[Messages.MacSize];
            using var key = Key.Import(XChaChaPoly, cookieKey, KeyBlobFormat.RawSymmetricKey);
            if (!XChaChaPoly.Decrypt(key, reply.Slice(Messages.CookieNonce, 24), _lastMac1, reply.Slice(Messages.CookieEncrypted, 32), cookie))
                return false;
            cookie.CopyTo(_cookie);
            _cookieSetMs = nowMs;
            _hasCookie = true;
            _hasLastMac1 = false;
            return true;
        }
    }
}
