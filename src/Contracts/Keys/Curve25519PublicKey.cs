using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;

namespace Weft.Contracts.Keys;

/// <summary>A Curve25519 public key: 32 bytes with value semantics. Node, machine and disco keys are all of this kind.</summary>
public readonly struct Curve25519PublicKey : IEquatable<Curve25519PublicKey>
{
    public const int Size = 32;

    // Four words make equality and hashing cheap on the packet path (peer lookup by key).
    private readonly ulong _w0, _w1, _w2, _w3;

    public Curve25519PublicKey(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size) throw new ArgumentException($"a Curve25519 public key is {Size} bytes, got {bytes.Length}", nameof(bytes));
        _w0 = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        _w1 = BinaryPrimitives.ReadUInt64LittleEndian(bytes[8..]);
        _w2 = BinaryPrimitives.ReadUInt64LittleEndian(bytes[16..]);
        _w3 = BinaryPrimitives.ReadUInt64LittleEndian(bytes[24..]);
    }

    public bool IsZero => (_w0 | _w1 | _w2 | _w3) == 0;

    public void CopyTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, _w0);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], _w1);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], _w2);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[24..], _w3);
    }

    public byte[] ToArray()
    {
        var bytes = new byte[Size];
        CopyTo(bytes);
        return bytes;
    }

    /// <summary>Lowercase hex, as the WireGuard UAPI and Tailscale's prefixed text forms write keys.</summary>
    public string ToHex() => Convert.ToHexStringLower(ToArray());

    /// <summary>Standard base64 (44 characters), as wg(8) and wg-quick files write keys.</summary>
    public string ToBase64() => Convert.ToBase64String(ToArray());

    public override string ToString() => ToBase64();

    public static bool TryParseBase64(string? text, out Curve25519PublicKey key)
    {
        Span<byte> bytes = stackalloc byte[Size];
        var ok = KeyEncoding.TryDecodeBase64(text, bytes);
        key = ok ? new Curve25519PublicKey(bytes) : default;
        return ok;
    }

    public static bool TryParseHex(string? text, out Curve25519PublicKey key)
    {
        Span<byte> bytes = stackalloc byte[Size];
        var ok = KeyEncoding.TryDecodeHex(text, bytes);
        key = ok ? new Curve25519PublicKey(bytes) : default;
        return ok;
    }

    public static Curve25519PublicKey ParseBase64(string text) =>
        TryParseBase64(text, out var key) ? key : throw new FormatException("not a base64 Curve25519 public key (44 characters)");

    public static Curve25519PublicKey ParseHex(string text) =>
        TryParseHex(text, out var key) ? key : throw new FormatException("not a hex Curve25519 public key (64 characters)");

    public bool Equals(Curve25519PublicKey other) => _w0 == other._w0 && _w1 == other._w1 && _w2 == other._w2 && _w3 == other._w3;

    public override bool Equals([NotNullWhen(true)] object? obj) => obj is Curve25519PublicKey other && Equals(other);

    public override int GetHashCode() => (int)(_w0 ^ (_w0 >> 32) ^ _w1 ^ _w2 ^ _w3);

    public static bool operator ==(Curve25519PublicKey left, Curve25519PublicKey right) => left.Equals(right);

    public static bool operator !=(Curve25519PublicKey left, Curve25519PublicKey right) => !left.Equals(right);
}
