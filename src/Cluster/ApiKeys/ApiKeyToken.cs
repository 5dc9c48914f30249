using System.Security.Cryptography;
using System.Text;

namespace Weft.Cluster.ApiKeys;

/// <summary>
/// An admin API key as the operator holds it: <c>weft_&lt;key id&gt;_&lt;secret&gt;</c>. The id
/// finds the key without a scan; only a SHA-256 of the 160-bit secret is ever stored (the secret is
/// random, so a slow password hash would add nothing).
/// </summary>
public sealed record ApiKeyToken(string KeyId, string Secret)
{
    private const string Prefix = "weft_";
    private const int KeyIdLength = 10;
    private const int SecretLength = 32;

    public static ApiKeyToken Generate(IdSource? source = null)
    {
        source ??= IdSource.Random;
        return new(source.Base32("api-key-id", KeyIdLength), source.Base32("api-key-secret", SecretLength));
    }

    public string SecretHash => Hash(Secret);

    public override string ToString() => $"{Prefix}{KeyId}_{Secret}";

    public static bool TryParse(string? text, out ApiKeyToken token)
    {
        token = null!;
        if (text is null || !text.StartsWith(Prefix, StringComparison.Ordinal)) return false;
        var parts = text[Prefix.Length..].Split('_');
        if (parts.Length != 2 || parts[0].Length != KeyIdLength || parts[1].Length != SecretLength) return false;
        if (!parts[0].All(IsBase32) || !parts[1].All(IsBase32)) return false;
        token = new ApiKeyToken(parts[0], parts[1]);
        return true;
    }

    public static string Hash(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes(secret)));

    private static bool IsBase32(char c) => c is >= 'a' and <= 'z' or >= '2' and <= '7';
}
