namespace Weft.Contracts.Crypto;

/// <summary>HMAC (RFC 2104) over BLAKE2s-256: 64-byte blocks, 32-byte output. The key may be empty.</summary>
public static class HmacBlake2s
{
    public const int Size = 32;

    /// <summary>HMAC(key, part1 ‖ part2) into <paramref name="mac32"/>.</summary>
    public static void Compute(ReadOnlySpan<byte> key, ReadOnlySpan<byte> part1, ReadOnlySpan<byte> part2, Span<byte> mac32)
    {
        Span<byte> block = stackalloc byte[Blake2s.BlockSize];
        block.Clear();
        if (key.Length > Blake2s.BlockSize) Blake2s.Hash(key, block[..Blake2s.MaxDigestSize]);
        else key.CopyTo(block);

        Span<byte> pad = stackalloc byte[Blake2s.BlockSize];
        for (var i = 0; i < pad.Length; i++) pad[i] = (byte)(block[i] ^ 0x36);
        var inner = new Blake2s(Size);
        inner.Update(pad);
        inner.Update(part1);
        inner.Update(part2);
        Span<byte> innerDigest = stackalloc byte[Size];
        inner.Finish(innerDigest);

        for (var i = 0; i < pad.Length; i++) pad[i] = (byte)(block[i] ^ 0x5c);
        var outer = new Blake2s(Size);
        outer.Update(pad);
        outer.Update(innerDigest);
        outer.Finish(mac32);
    }

    public static void Compute(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data, Span<byte> mac32) =>
        Compute(key, data, default, mac32);
}

/// <summary>
/// WireGuard's KDF (HKDF with HMAC-BLAKE2s, salt = chaining key, empty info):
/// τ0 = HMAC(C, input); τ1 = HMAC(τ0, 0x01); τi = HMAC(τ0, τ(i−1) ‖ i). Returns τ1..τn.
/// </summary>
public static class Kdf
{
    public static void Derive(ReadOnlySpan<byte> chainingKey, ReadOnlySpan<byte> input, Span<byte> t1) =>
        Derive(chainingKey, input, t1, default, default);

    public static void Derive(ReadOnlySpan<byte> chainingKey, ReadOnlySpan<byte> input, Span<byte> t1, Span<byte> t2) =>
        Derive(chainingKey, input, t1, t2, default);

    /// <summary>Fills τ1, and τ2 and τ3 when their buffers are not empty. Each buffer is 32 bytes; they may alias the inputs.</summary>
    public static void Derive(ReadOnlySpan<byte> chainingKey, ReadOnlySpan<byte> input, Span<byte> t1, Span<byte> t2, Span<byte> t3)
    {
        Span<byte> prk = stackalloc byte[HmacBlake2s.Size];
        HmacBlake2s.Compute(chainingKey, input, prk);

        Span<byte> counter = stackalloc byte[1];
        Span<byte> previous = stackalloc byte[HmacBlake2s.Size];
        counter[0] = 1;
        HmacBlake2s.Compute(prk, counter, previous);
        previous.CopyTo(t1);
        if (t2.IsEmpty) { prk.Clear(); return; }

        counter[0] = 2;
        HmacBlake2s.Compute(prk, previous, counter, previous);
        previous.CopyTo(t2);
        if (!t3.IsEmpty)
        {
            counter[0] = 3;
            HmacBlake2s.Compute(prk, previous, counter, previous);
            previous.CopyTo(t3);
        }
        prk.Clear();
        previous.Clear();
    }
}
