using Weft.Cluster.ApiKeys;

namespace Weft.Cluster.Tailnets;

/// <summary>
/// An auth key as a device presents it: <c>weft-auth.&lt;tailnet id&gt;.&lt;key id&gt;.&lt;secret&gt;</c>.
/// The tailnet id routes the registration to the right tenant without a lookup; only a SHA-256
/// of the 160-bit secret is stored.
/// </summary>
public sealed record AuthKeyToken(string TailnetId, string KeyId, string Secret)
{
    private const string Prefix = "weft-auth.";

    public static AuthKeyToken Generate(string tailnetId, IdSource? source = null)
    {
        source ??= IdSource.Random;
        return new(tailnetId, source.Base32("auth-key-id", 10), source.Base32("auth-key-secret", 32));
    }

    public string SecretHash => ApiKeyToken.Hash(Secret);

    public override string ToString() => $"{Prefix}{TailnetId}.{KeyId}.{Secret}";

    public static bool TryParse(string? text, out AuthKeyToken token)
    {
        token = null!;
        if (text is null || text.Length > 128 || !text.StartsWith(Prefix, StringComparison.Ordinal)) return false;
        var parts = text[Prefix.Length..].Split('.');
        if (parts.Length != 3 || !Identifiers.LooksLikeTailnetId(parts[0]) || parts[1].Length != 10 || parts[2].Length != 32) return false;
        if (!parts.Skip(1).All(p => p.All(c => c is >= 'a' and <= 'z' or >= '2' and <= '7'))) return false;
        token = new AuthKeyToken(parts[0], parts[1], parts[2]);
        return true;
    }
}
