using System.Net;
using System.Net.Sockets;

namespace Weft.Contracts.Control;

/// <summary>
/// Reads IP addresses and CIDR prefixes the way Go's <c>net/netip</c> (and so Tailscale) does, and
/// no looser. <see cref="IPAddress.TryParse(string?, out IPAddress?)"/> accepts the old inet_aton
/// shorthands: <c>100.64.1</c> is 100.64.0.1, <c>10.0</c> is 10.0.0.0 and <c>0x0a.0.0.1</c> is
/// 10.0.0.1. In a policy that turns a typo into access to some other device, so every address a
/// user writes (policy, API, agent flags) goes through here: IPv4 only as four decimal octets
/// without leading zeros, IPv6 only in its standard text (no zone), and a prefix only as one of
/// those, a slash and a decimal length that leaves no host bits set.
/// </summary>
public static class IpLiteral
{
    public static bool TryParseAddress(string? text, out IPAddress address)
    {
        address = IPAddress.None;
        if (string.IsNullOrEmpty(text) || text.Length > 45) return false;
        if (text.Contains(':'))
        {
            if (text.Contains('%') || text.Contains('[')) return false;
            // An embedded IPv4 tail (::ffff:1.2.3.4) must be a full dotted quad too.
            var lastColon = text.LastIndexOf(':');
            if (text.Contains('.') && !IsDottedQuad(text.AsSpan(lastColon + 1))) return false;
            if (!text.All(c => char.IsAsciiHexDigit(c) || c is ':' or '.')) return false;
            if (!IPAddress.TryParse(text, out var parsed) || parsed.AddressFamily != AddressFamily.InterNetworkV6) return false;
            address = parsed;
            return true;
        }
        if (!IsDottedQuad(text)) return false;
        address = IPAddress.Parse(text);
        return true;
    }

    /// <summary>A CIDR prefix (<c>198.18.40.0/24</c>); with <paramref name="allowBareAddress"/> an address alone is its /32 or /128.</summary>
    public static bool TryParsePrefix(string? text, out IPNetwork prefix, bool allowBareAddress = false)
    {
        prefix = default;
        if (string.IsNullOrEmpty(text)) return false;
        var slash = text.IndexOf('/');
        if (slash < 0)
        {
            if (!allowBareAddress || !TryParseAddress(text, out var single)) return false;
            prefix = new IPNetwork(single, MaxLength(single));
            return true;
        }
        var lengthText = text.AsSpan(slash + 1);
        if (lengthText.Length is 0 or > 3 || !lengthText.ContainsOnlyDigits() || lengthText.Length > 1 && lengthText[0] == '0') return false;
        if (!TryParseAddress(text[..slash], out var network)) return false;
        var length = int.Parse(lengthText);
        if (length > MaxLength(network)) return false;
        // A prefix names its network: 100.64.1.2/10 is refused, not quietly read as 100.64.0.0/10.
        if (!IPNetwork.TryParse(text, out var parsed) || !parsed.BaseAddress.Equals(network)) return false;
        prefix = parsed;
        return true;
    }

    public static int MaxLength(IPAddress address) => address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;

    private static bool IsDottedQuad(ReadOnlySpan<char> text)
    {
        var octets = 0;
        var start = 0;
        for (var i = 0; i <= text.Length; i++)
        {
            if (i < text.Length && text[i] != '.') continue;
            var part = text[start..i];
            if (part.Length is 0 or > 3 || !part.ContainsOnlyDigits() || part.Length > 1 && part[0] == '0' || int.Parse(part) > 255) return false;
            octets++;
            start = i + 1;
        }
        return octets == 4;
    }

    private static bool ContainsOnlyDigits(this ReadOnlySpan<char> text)
    {
        foreach (var c in text)
            if (!char.IsAsciiDigit(c)) return false;
        return true;
    }
}
