using System.Security.Cryptography;

namespace Weft.Cluster;

/// <summary>Opaque random identifiers. Lowercase base32 without padding, so they read well and never need escaping.</summary>
public static class Identifiers
{
    public const string TailnetPrefix = "tn_";

    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz234567";

    public static string NewTailnetId() => TailnetPrefix + RandomBase32(12);

    public static string RandomBase32(int length)
    {
        Span<byte> bytes = stackalloc byte[length];
        RandomNumberGenerator.Fill(bytes);
        return string.Create(length, bytes.ToArray(), static (chars, b) =>
        {
            for (var i = 0; i < chars.Length; i++) chars[i] = Alphabet[b[i] & 31];
        });
    }

    public static bool LooksLikeTailnetId(string value) => value.StartsWith(TailnetPrefix, StringComparison.Ordinal);
}
