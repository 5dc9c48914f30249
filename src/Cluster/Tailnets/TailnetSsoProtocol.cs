using System.Collections.Immutable;
using Weft.Cluster.Messaging;

namespace Weft.Cluster.Tailnets;

// The tailnet's identity provider: how its people sign in (OpenID Connect). Each tailnet has its own,
// so that one cluster serves many companies, each with its own provider.

/// <summary>
/// One tailnet's OpenID Connect provider, as its admin registered Weft there.
/// </summary>
/// <param name="Issuer">The provider's issuer URL; its discovery document is at <c>{Issuer}/.well-known/openid-configuration</c>.</param>
/// <param name="ClientSecret">Never shown again after it is set, never logged (<see cref="ToString"/> leaves it out).</param>
/// <param name="AllowedDomains">Email domains whose users may sign in (empty: any the provider vouches for).</param>
/// <param name="AllowedGroups">Groups (from <paramref name="GroupsClaim"/>) whose members may sign in (empty: any).</param>
/// <param name="GroupsClaim">The ID token claim that lists the user's groups: they become <c>group:</c> names in the policy.</param>
/// <param name="Scopes">The scopes asked for; always with <c>openid</c>.</param>
public sealed record SsoSettings(
    string Issuer, string ClientId, string ClientSecret, ImmutableArray<string> AllowedDomains, ImmutableArray<string> AllowedGroups,
    string GroupsClaim, ImmutableArray<string> Scopes)
{
    public const string DefaultGroupsClaim = "groups";
    public static readonly ImmutableArray<string> DefaultScopes = ["openid", "email", "profile"];

    public override string ToString() =>
        $"SsoSettings {{ Issuer = {Issuer}, ClientId = {ClientId}, ClientSecret = (secret), AllowedDomains = [{string.Join(", ", AllowedDomains)}], " +
        $"AllowedGroups = [{string.Join(", ", AllowedGroups)}], GroupsClaim = {GroupsClaim}, Scopes = [{string.Join(" ", Scopes)}] }}";

    public bool Equals(SsoSettings? other) =>
        other is not null && Issuer == other.Issuer && ClientId == other.ClientId && ClientSecret == other.ClientSecret && GroupsClaim == other.GroupsClaim
        && AllowedDomains.SequenceEqual(other.AllowedDomains) && AllowedGroups.SequenceEqual(other.AllowedGroups) && Scopes.SequenceEqual(other.Scopes);

    public override int GetHashCode() => HashCode.Combine(Issuer, ClientId, GroupsClaim);

    /// <summary>Why the person with <paramref name="email"/> and <paramref name="groups"/> may not sign in under these settings (null: they may).</summary>
    public string? Refuses(string email, ImmutableArray<string> groups)
    {
        var at = email.LastIndexOf('@');
        var domain = at < 0 ? "" : email[(at + 1)..];
        if (!AllowedDomains.IsDefaultOrEmpty && !AllowedDomains.Contains(domain, StringComparer.OrdinalIgnoreCase))
            return $"{email} may not sign in to this tailnet: it admits the email domains {string.Join(", ", AllowedDomains)} only.";
        groups = groups.IsDefault ? [] : groups;
        if (!AllowedGroups.IsDefaultOrEmpty && !AllowedGroups.Intersect(groups, StringComparer.Ordinal).Any())
            return $"{email} may not sign in to this tailnet: it admits members of {string.Join(", ", AllowedGroups)} only (your groups: {(groups.IsEmpty ? "none" : string.Join(", ", groups))}).";
        return null;
    }
}

// Commands

/// <summary>Sets (or replaces) the tailnet's provider; answered with <see cref="SsoInfo"/>.</summary>
[WireName("tailnet.set-sso")]
public sealed record SetSso(string TailnetId, SsoSettings Settings) : ITailnetCommand
{
    public override string ToString() => $"SetSso {{ TailnetId = {TailnetId}, Settings = {Settings} }}";
}

/// <summary>Removes the provider: new devices join with auth keys (or approval) again; answered with <see cref="SsoInfo"/>.</summary>
[WireName("tailnet.remove-sso")]
public sealed record RemoveSso(string TailnetId) : ITailnetCommand;

// Queries and replies

[WireName("tailnet.get-sso")]
public sealed record GetSso(string TailnetId) : ITailnetMessage;

/// <summary>The tailnet's provider, or null when it has none.</summary>
[WireName("tailnet.sso")]
public sealed record SsoInfo(string TailnetId, SsoSettings? Settings) : IClusterMessage;

// Events

public sealed record SsoConfigured(SsoSettings Settings) : ITailnetEvent
{
    public override string ToString() => $"SsoConfigured {{ Settings = {Settings} }}";
}

public sealed record SsoRemoved : ITailnetEvent;
