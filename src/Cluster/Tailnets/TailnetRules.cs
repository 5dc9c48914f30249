using System.Text.RegularExpressions;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tailnets;

/// <summary>What makes a tailnet name and its settings valid. Shared by the entity logic and the API.</summary>
public static partial class TailnetRules
{
    /// <summary>Tailscale's default node-key lifetime, and its upper bound.</summary>
    public const int DefaultNodeKeyExpiryDays = 180;
    public const int MinNodeKeyExpiryDays = 1;
    public const int MaxNodeKeyExpiryDays = 180;

    /// <summary>New tailnets get MagicDNS names under <c>&lt;name&gt;.weft.internal</c>; .internal is reserved for private use (ICANN, 2024).</summary>
    public const string DefaultDnsZone = "weft.internal";

    /// <summary>What an expired device's agent is told, wherever its expiry ends or refuses a session.</summary>
    public const string ExpiredDeviceMessage = "this device's node key expired; re-authorise it: weft-agent up --auth-key KEY --force-reauth";

    public static TailnetSettings DefaultSettings(string name) =>
        new(DefaultNodeKeyExpiryDays, $"{name}.{DefaultDnsZone}");

    // A DNS label: the name also appears in DNS names and URLs.
    [GeneratedRegex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", RegexOptions.CultureInvariant)]
    private static partial Regex DnsLabel();

    public static Rejection? CheckName(string? name)
    {
        if (string.IsNullOrEmpty(name)) return Rejection.Invalid("name must not be empty");
        if (!DnsLabel().IsMatch(name))
            return Rejection.Invalid($"name '{Shorten(name)}' is invalid: use 1-63 characters a-z, 0-9 and '-', starting and ending with a letter or digit");
        return null;
    }

    public static Rejection? CheckNodeKeyExpiryDays(int days) =>
        days is < MinNodeKeyExpiryDays or > MaxNodeKeyExpiryDays
            ? Rejection.Invalid($"nodeKeyExpiryDays must be between {MinNodeKeyExpiryDays} and {MaxNodeKeyExpiryDays}, got {days}")
            : null;

    public static Rejection? CheckDnsSuffix(string? suffix)
    {
        if (string.IsNullOrEmpty(suffix)) return Rejection.Invalid("dnsSuffix must not be empty");
        if (suffix.Length > 253) return Rejection.Invalid($"dnsSuffix is {suffix.Length} characters long; a DNS name has at most 253");
        foreach (var label in suffix.Split('.'))
        {
            if (!DnsLabel().IsMatch(label))
                return Rejection.Invalid($"dnsSuffix '{Shorten(suffix)}' is invalid: label '{Shorten(label)}' must be 1-63 characters a-z, 0-9 and '-', starting and ending with a letter or digit");
        }
        return null;
    }

    public static Rejection? CheckSettings(TailnetSettings settings) =>
        CheckNodeKeyExpiryDays(settings.NodeKeyExpiryDays) ?? CheckDnsSuffix(settings.DnsSuffix) ?? CheckEphemeralTimeout(settings.EphemeralTimeoutSeconds);

    public const int MaxEphemeralTimeoutSeconds = 7 * 24 * 3600;

    public static Rejection? CheckEphemeralTimeout(int seconds) =>
        seconds is < 0 or > MaxEphemeralTimeoutSeconds
            ? Rejection.Invalid($"ephemeralTimeoutSeconds must be between 0 (default, {TailnetSettings.DefaultEphemeralTimeoutSeconds} s) and {MaxEphemeralTimeoutSeconds}, got {seconds}")
            : null;

    public static Rejection? CheckTags(IEnumerable<string> tags)
    {
        foreach (var tag in tags)
            if (!Policy.PolicyNames.IsTag(tag)) return Rejection.Invalid($"tag '{Shorten(tag)}' is invalid: {Policy.PolicyNames.TagRule}");
        return null;
    }

    public static Rejection? CheckUserName(string? name) =>
        string.IsNullOrWhiteSpace(name) || name.Length > 128 || name.Any(char.IsControl)
            ? Rejection.Invalid("user name must be 1-128 printable characters (for example alice@example.com)")
            : null;

    /// <summary>A MagicDNS label from a hostname: lowercase, a-z 0-9 and '-', at most 63 characters; "device" if nothing is left.</summary>
    public static string DeviceNameFrom(string hostname)
    {
        var chars = hostname.ToLowerInvariant().Select(c => c is >= 'a' and <= 'z' or >= '0' and <= '9' ? c : '-').ToArray();
        var name = new string(chars).Trim('-');
        while (name.Contains("--", StringComparison.Ordinal)) name = name.Replace("--", "-", StringComparison.Ordinal);
        if (name.Length > 63) name = name[..63].TrimEnd('-');
        return name.Length == 0 ? "device" : name;
    }

    private static string Shorten(string value) => value.Length <= 80 ? value : value[..77] + "...";
}
