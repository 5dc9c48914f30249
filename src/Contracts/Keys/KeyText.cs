namespace Weft.Contracts.Keys;

/// <summary>The prefixed text forms of public keys (Tailscale's convention): the prefix says what the key is for.</summary>
public static class KeyText
{
    public const string NodePrefix = "nodekey:";
    public const string MachinePrefix = "mkey:";
    public const string DiscoPrefix = "discokey:";

    public static string Format(string prefix, Curve25519PublicKey key) => prefix + key.ToHex();

    public static bool TryParse(string prefix, string? text, out Curve25519PublicKey key)
    {
        key = default;
        return text is not null && text.StartsWith(prefix, StringComparison.Ordinal) && Curve25519PublicKey.TryParseHex(text[prefix.Length..], out key);
    }
}

/// <summary>A node key: the device's WireGuard static public key, and its identity to peers and relays. Rotates.</summary>
public readonly record struct NodeKey(Curve25519PublicKey Key)
{
    public override string ToString() => KeyText.Format(KeyText.NodePrefix, Key);

    public static bool TryParse(string? text, out NodeKey key)
    {
        var ok = KeyText.TryParse(KeyText.NodePrefix, text, out var raw);
        key = new NodeKey(raw);
        return ok;
    }

    public static NodeKey Parse(string text) => TryParse(text, out var key) ? key : throw new FormatException($"'{text}' is not a nodekey:<64 hex>");
}

/// <summary>A machine key: long-lived per installation; authenticates the agent's control channel.</summary>
public readonly record struct MachineKey(Curve25519PublicKey Key)
{
    public override string ToString() => KeyText.Format(KeyText.MachinePrefix, Key);

    public static bool TryParse(string? text, out MachineKey key)
    {
        var ok = KeyText.TryParse(KeyText.MachinePrefix, text, out var raw);
        key = new MachineKey(raw);
        return ok;
    }

    public static MachineKey Parse(string text) => TryParse(text, out var key) ? key : throw new FormatException($"'{text}' is not an mkey:<64 hex>");
}

/// <summary>A disco key: new at every agent start; seals NAT-traversal messages.</summary>
public readonly record struct DiscoKey(Curve25519PublicKey Key)
{
    public override string ToString() => KeyText.Format(KeyText.DiscoPrefix, Key);

    public static bool TryParse(string? text, out DiscoKey key)
    {
        var ok = KeyText.TryParse(KeyText.DiscoPrefix, text, out var raw);
        key = new DiscoKey(raw);
        return ok;
    }

    public static DiscoKey Parse(string text) => TryParse(text, out var key) ? key : throw new FormatException($"'{text}' is not a discokey:<64 hex>");
}
