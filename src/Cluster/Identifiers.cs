using System.Security.Cryptography;

namespace Weft.Cluster;

/// <summary>Opaque random identifiers. Lowercase base32 without padding, so they read well and never need escaping.</summary>
public static class Identifiers
{
    public const string TailnetPrefix = "tn_";
    public const string DevicePrefix = "dev_";

    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz234567";

    public static string NewTailnetId(IdSource? source = null) => TailnetPrefix + (source ?? IdSource.Random).Base32("tailnet", 12);

    public static string RandomBase32(int length)
    {
        Span<byte> bytes = stackalloc byte[length];
        RandomNumberGenerator.Fill(bytes);
        return Base32(bytes);
    }

    /// <summary>One base32 character per byte (its low five bits).</summary>
    public static string Base32(ReadOnlySpan<byte> bytes) => string.Create(bytes.Length, bytes.ToArray(), static (chars, b) =>
    {
        for (var i = 0; i < chars.Length; i++) chars[i] = Alphabet[b[i] & 31];
    });

    public static bool LooksLikeTailnetId(string value) => value.StartsWith(TailnetPrefix, StringComparison.Ordinal);

    /// <summary>Whether <paramref name="value"/> is an id with <paramref name="prefix"/>: the prefix, then 1 to 60 lowercase letters and digits.</summary>
    public static bool IsId(string value, string prefix) =>
        value.StartsWith(prefix, StringComparison.Ordinal) && value.Length > prefix.Length && value.Length <= prefix.Length + 60
        && value.AsSpan(prefix.Length).IndexOfAnyExcept("abcdefghijklmnopqrstuvwxyz0123456789") < 0;
}

/// <summary>
/// Where the ids and secrets of a new object come from: fresh randomness, or, for a request that
/// carries an Idempotency-Key, a seed derived from it, so that the same request made again creates
/// (and answers with) the very same object. Each label (a tailnet id, a key's secret) gets its own
/// independent bytes from the seed (HKDF-Expand).
/// </summary>
public sealed class IdSource
{
    private readonly byte[]? _seed;

    private IdSource(byte[]? seed) => _seed = seed;

    public static readonly IdSource Random = new(null);

    public static IdSource Derived(byte[] seed) => new(seed);

    public bool IsDerived => _seed is not null;

    public string Base32(string label, int length) => _seed is null
        ? Identifiers.RandomBase32(length)
        : Identifiers.Base32(HKDF.Expand(HashAlgorithmName.SHA256, _seed, length, System.Text.Encoding.UTF8.GetBytes(label)));
}
