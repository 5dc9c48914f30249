using System.Collections.Immutable;
using System.Net;
using Weft.Cluster.Persistence;
using Weft.Cluster.Policy;

namespace Weft.Cluster.Tailnets;

/// <summary>The tailnet's identity provider (<see cref="SsoSettings"/>): set, replaced and removed by its admins.</summary>
public sealed partial record TailnetState
{
    /// <summary>The tailnet's OpenID Connect provider; null: devices join with auth keys or approval only.</summary>
    public SsoSettings? Sso { get; init; }

    public SsoInfo SsoInfo() => new(TailnetId, Sso);

    private Decision<ITailnetEvent> SsoDecision(ITailnetCommand command) => command switch
    {
        SetSso set => SsoRules.Check(set.Settings) is { } invalid
            ? Decision<ITailnetEvent>.Reject(invalid)
            : SsoRules.Normalized(set.Settings) is var settings && settings.Equals(Sso)
                ? Decision<ITailnetEvent>.Unchanged
                : Decision<ITailnetEvent>.Accept(new SsoConfigured(settings)),
        RemoveSso when Sso is null => Decision<ITailnetEvent>.Unchanged,
        // A policy that names provider groups nobody signed in to yet would no longer parse without the provider.
        RemoveSso when PolicyText is not null && PolicyParser.Parse(PolicyText, (this with { Sso = null }).ProviderGroups(), RoleMembers(), stored: true).Policy is null =>
            Decision<ITailnetEvent>.Reject(Rejection.Conflict(
                "the policy names groups that only the identity provider defines; remove them from the policy (or define them in its groups) first")),
        RemoveSso => Decision<ITailnetEvent>.Accept(new SsoRemoved()),
        _ => throw new InvalidOperationException(command.GetType().Name),
    };

    private TailnetState ApplySso(ITailnetEvent @event) => @event switch
    {
        SsoConfigured configured => this with { Sso = configured.Settings, _policy = null },
        SsoRemoved => this with { Sso = null, _policy = null },
        _ => throw new InvalidOperationException(@event.GetType().Name),
    };
}

/// <summary>What a tailnet's provider settings must be: each problem named for the admin who typed it.</summary>
public static class SsoRules
{
    public const int MaxUrlLength = 2048;
    public const int MaxClientIdLength = 256;
    public const int MaxClientSecretLength = 1024;
    public const int MaxEntries = 100;
    public const int MaxNameLength = 256;

    public static Rejection? Check(SsoSettings settings)
    {
        if (CheckIssuer(settings.Issuer) is { } issuer) return Rejection.Invalid(issuer);
        if (CheckText(settings.ClientId, MaxClientIdLength) is { } clientId) return Rejection.Invalid($"clientId {clientId}");
        // Stored sealed (Identity.ClientSecrets): the sealed form of the longest secret is about 4/3 longer.
        var secretLimit = settings.ClientSecret.StartsWith(Identity.ClientSecrets.SealedPrefix, StringComparison.Ordinal) ? 2 * MaxClientSecretLength : MaxClientSecretLength;
        if (CheckText(settings.ClientSecret, secretLimit) is { } secret) return Rejection.Invalid($"clientSecret {secret}");
        var domains = settings.AllowedDomains.IsDefault ? [] : settings.AllowedDomains;
        if (domains.Length > MaxEntries) return Rejection.Invalid($"allowedDomains has {domains.Length} entries; at most {MaxEntries}");
        if (domains.FirstOrDefault(d => !IsDomain(d)) is { } domain)
            return Rejection.Invalid($"allowedDomains: '{domain}' is not a domain name (as in alice@example.com: example.com)");
        var groups = settings.AllowedGroups.IsDefault ? [] : settings.AllowedGroups;
        if (groups.Length > MaxEntries) return Rejection.Invalid($"allowedGroups has {groups.Length} entries; at most {MaxEntries}");
        if (groups.Select(g => CheckText(g, MaxNameLength)).FirstOrDefault(p => p is not null) is { } group) return Rejection.Invalid($"allowedGroups: a group {group}");
        if (settings.GroupsClaim.Length > 0 && (settings.GroupsClaim.Length > MaxNameLength || !settings.GroupsClaim.All(IsClaimNameChar)))
            return Rejection.Invalid($"groupsClaim '{settings.GroupsClaim}' is not a claim name (letters, digits and _ - . : /, at most {MaxNameLength})");
        var scopes = settings.Scopes.IsDefault ? [] : settings.Scopes;
        if (scopes.Length > MaxEntries) return Rejection.Invalid($"scopes has {scopes.Length} entries; at most {MaxEntries}");
        // RFC 6749 §3.3: a scope token is printable ASCII without space, quote or backslash.
        if (scopes.FirstOrDefault(s => s.Length == 0 || s.Length > MaxNameLength || s.Any(c => c is <= ' ' or '"' or '\\' or > '~')) is { } scope)
            return Rejection.Invalid($"scopes: '{scope}' is not a scope (printable ASCII without spaces, quotes or backslashes)");
        return null;
    }

    /// <summary>The settings as stored: domains in lower case, lists sorted and without repeats, <c>openid</c> among the scopes, the default groups claim.</summary>
    public static SsoSettings Normalized(SsoSettings settings) => settings with
    {
        Issuer = settings.Issuer.TrimEnd('/'),
        AllowedDomains = [.. (settings.AllowedDomains.IsDefault ? [] : settings.AllowedDomains).Select(d => d.ToLowerInvariant()).Distinct().Order(StringComparer.Ordinal)],
        AllowedGroups = [.. (settings.AllowedGroups.IsDefault ? [] : settings.AllowedGroups).Distinct().Order(StringComparer.Ordinal)],
        GroupsClaim = settings.GroupsClaim.Length == 0 ? SsoSettings.DefaultGroupsClaim : settings.GroupsClaim,
        Scopes = [.. new[] { "openid" }.Concat((settings.Scopes.IsDefaultOrEmpty ? SsoSettings.DefaultScopes : settings.Scopes).Where(s => s != "openid")).Distinct()],
    };

    /// <summary>https, or plain http to this machine only (a provider on loopback, as in tests): the ID token and the client secret travel over it.</summary>
    private static string? CheckIssuer(string issuer)
    {
        if (issuer.Length == 0) return "issuer is required: the provider's issuer URL (for example https://accounts.google.com)";
        if (issuer.Length > MaxUrlLength) return $"issuer is longer than {MaxUrlLength} characters";
        if (!Uri.TryCreate(issuer, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http"))
            return $"issuer '{issuer}' is not an absolute https URL";
        if (uri.Scheme == "http" && !(uri.IsLoopback || (IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip))))
            return $"issuer '{issuer}' must use https (plain http is allowed only to a provider on this machine's loopback)";
        if (uri.Query.Length > 0 || uri.Fragment.Length > 0 || uri.UserInfo.Length > 0)
            return $"issuer '{issuer}' must not carry a query, fragment or user name";
        return null;
    }

    private static string? CheckText(string value, int maxLength) =>
        value.Length == 0 ? "is required"
        : value.Length > maxLength ? $"is longer than {maxLength} characters"
        : value.Any(char.IsControl) ? "contains control characters"
        : null;

    private static bool IsDomain(string domain) =>
        domain.Length is > 0 and <= 253 && domain.Split('.') is { Length: >= 2 } labels
        && labels.All(l => l.Length is > 0 and <= 63 && l.All(c => char.IsAsciiLetterOrDigit(c) || c == '-') && l[0] != '-' && l[^1] != '-');

    private static bool IsClaimNameChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.' or ':' or '/';
}
