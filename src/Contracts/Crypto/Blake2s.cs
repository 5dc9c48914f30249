using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Weft.Contracts.Crypto;

/// <summary>
/// BLAKE2s (RFC 7693): 32-bit words, 64-byte blocks, digests of 1–32 bytes, optional key of up to
/// 32 bytes. WireGuard uses the unkeyed 32-byte hash (HASH), the keyed 16-byte MAC (mac1, mac2,
/// cookies) and HMAC over it. The digest length is part of the parameter block, so a 16-byte
/// digest is not the first half of a 32-byte one.
/// <para>A mutable struct for incremental hashing; allocation-free.</para>
/// </summary>
public struct Blake2s
{
    public const int BlockSize = 64;
    public const int MaxDigestSize = 32;
    public const int MaxKeySize = 32;

    private static ReadOnlySpan<uint> IV =>
    [
        0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
    ];

    // RFC 7693 §2.7: the message word schedule of each of the ten rounds.
    private static ReadOnlySpan<byte> Sigma =>
    [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3,
        11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4,
        7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8,
        9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13,
        2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9,
        12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11,
        13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10,
        6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5,
        10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0,
    ];

    private ChainValue _h;
    private Block _buffer;
    private int _buffered;
    private ulong _counter;
    private int _digestSize;

    /// <summary>Starts a hash with the given digest size (1–32) and optional key (0–32 bytes).</summary>
    public Blake2s(int digestSize, ReadOnlySpan<byte> key = default)
    {
        if (digestSize is < 1 or > MaxDigestSize) throw new ArgumentOutOfRangeException(nameof(digestSize), "BLAKE2s digests are 1-32 bytes");
        if (key.Length > MaxKeySize) throw new ArgumentOutOfRangeException(nameof(key), "BLAKE2s keys are at most 32 bytes");

        _digestSize = digestSize;
        IV.CopyTo(_h);
        // Parameter block word 0: digest length, key length, fanout = 1, depth = 1.
        _h[0] ^= 0x01010000u ^ ((uint)key.Length << 8) ^ (uint)digestSize;
        _buffered = 0;
        _counter = 0;
        if (key.Length > 0)
        {
            Span<byte> block = _buffer;
            block.Clear();
            key.CopyTo(block);
            _buffered = BlockSize;
        }
    }

    public void Update(ReadOnlySpan<byte> data)
    {
        if (_digestSize == 0) throw new InvalidOperationException("Blake2s used without a constructor");
        while (data.Length > 0)
        {
            // The last block must be compressed with the final flag, so a full buffer waits for more data.
            if (_buffered == BlockSize)
            {
                _counter += BlockSize;
                Compress(ref _h, _buffer, _counter, final: false);
                _buffered = 0;
            }
            var take = Math.Min(BlockSize - _buffered, data.Length);
            data[..take].CopyTo(((Span<byte>)_buffer)[_buffered..]);
            _buffered += take;
            data = data[take..];
        }
    }

    /// <summary>Writes the digest (<paramref name="digest"/> must be exactly the digest size) and ends the hash.</summary>
    public void Finish(Span<byte> digest)
    {
        if (digest.Length != _digestSize) throw new ArgumentException($"digest buffer must be {_digestSize} bytes", nameof(digest));
        _counter += (ulong)_buffered;
        ((Span<byte>)_buffer)[_buffered..].Clear();
        Compress(ref _h, _buffer, _counter, final: true);

        Span<byte> full = stackalloc byte[MaxDigestSize];
        for (var i = 0; i < 8; i++) BinaryPrimitives.WriteUInt32LittleEndian(full[(i * 4)..], _h[i]);
        full[..digest.Length].CopyTo(digest);
        _digestSize = 0;
    }

    /// <summary>HASH(data): unkeyed BLAKE2s-256.</summary>
    public static void Hash(ReadOnlySpan<byte> data, Span<byte> digest32)
    {
        var hash = new Blake2s(MaxDigestSize);
        hash.Update(data);
        hash.Finish(digest32);
    }

    /// <summary>HASH(a ‖ b) without concatenating.</summary>
    public static void Hash(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, Span<byte> digest32)
    {
        var hash = new Blake2s(MaxDigestSize);
        hash.Update(a);
        hash.Update(b);
        hash.Finish(digest32);
    }

    /// <summary>MAC(key, data): keyed BLAKE2s with a 16-byte digest, as WireGuard's mac1, mac2 and cookies use it.</summary>
    public static void Mac(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data, Span<byte> mac16)
    {
        var hash = new Blake2s(16, key);
        hash.Update(data);
        hash.Finish(mac16);
    }

    private static void Compress(ref ChainValue h, ReadOnlySpan<byte> block, ulong counter, bool final)
    {
        Span<uint> m = stackalloc uint[16];
        for (var i = 0; i < 16; i++) m[i] = BinaryPrimitives.ReadUInt32LittleEndian(block[(i * 4)..]);

        uint v0 = h[0], v1 = h[1], v2 = h[2], v3 = h[3], v4 = h[4], v5 = h[5], v6 = h[6], v7 = h[7];
        uint v8 = IV[0], v9 = IV[1], v10 = IV[2], v11 = IV[3];
        uint v12 = IV[4] ^ (uint)counter, v13 = IV[5] ^ (uint)(counter >> 32);
        uint v14 = final ? ~IV[6] : IV[6], v15 = IV[7];

        var sigma = Sigma;
        for (var round = 0; round < 10; round++)
        {
            var s = sigma.Slice(round * 16, 16);
            G(ref v0, ref v4, ref v8, ref v12, m[s[0]], m[s[1]]);
            G(ref v1, ref v5, ref v9, ref v13, m[s[2]], m[s[3]]);
            G(ref v2, ref v6, ref v10, ref v14, m[s[4]], m[s[5]]);
            G(ref v3, ref v7, ref v11, ref v15, m[s[6]], m[s[7]]);
            G(ref v0, ref v5, ref v10, ref v15, m[s[8]], m[s[9]]);
            G(ref v1, ref v6, ref v11, ref v12, m[s[10]], m[s[11]]);
            G(ref v2, ref v7, ref v8, ref v13, m[s[12]], m[s[13]]);
            G(ref v3, ref v4, ref v9, ref v14, m[s[14]], m[s[15]]);
        }

        h[0] ^= v0 ^ v8; h[1] ^= v1 ^ v9; h[2] ^= v2 ^ v10; h[3] ^= v3 ^ v11;
        h[4] ^= v4 ^ v12; h[5] ^= v5 ^ v13; h[6] ^= v6 ^ v14; h[7] ^= v7 ^ v15;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void G(ref uint a, ref uint b, ref uint c, ref uint d, uint x, uint y)
    {
        a += b + x; d = BitOperations.RotateRight(d ^ a, 16);
        c += d; b = BitOperations.RotateRight(b ^ c, 12);
        a += b + y; d = BitOperations.RotateRight(d ^ a, 8);
        c += d; b = BitOperations.RotateRight(b ^ c, 7);
    }

    [InlineArray(8)]
    private struct ChainValue
    {
        private uint _element;
    }

    [InlineArray(BlockSize)]
    private struct Block
    {
        private byte _element;
    }
}
