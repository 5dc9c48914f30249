namespace Weft.Contracts.Admin;

/// <summary>One tailnet as the admin API shows it.</summary>
public sealed record TailnetResource(string Id, string Name, DateTimeOffset CreatedAt, TailnetSettingsResource Settings);

/// <summary>The settings an operator may change on a tailnet.</summary>
/// <param name="NodeKeyExpiryDays">How long a device's node key stays valid before it must rotate (Tailscale allows 1–180 days).</param>
/// <param name="DnsSuffix">MagicDNS suffix: devices are named <c>&lt;host&gt;.&lt;suffix&gt;</c>.</param>
/// <param name="EphemeralTimeoutSeconds">How long an ephemeral device may stay disconnected before it is removed.</param>
/// <param name="KeylessRegistration">Devices may register without an auth key and wait, with no address and no name, for an admin's approval (off by default).</param>
public sealed record TailnetSettingsResource(int NodeKeyExpiryDays, string DnsSuffix, int EphemeralTimeoutSeconds, bool KeylessRegistration = false);

/// <summary>A row of <c>GET /api/v1/tailnets</c>.</summary>
public sealed record TailnetSummaryResource(string Id, string Name, DateTimeOffset CreatedAt);

public sealed record TailnetListResource(IReadOnlyList<TailnetSummaryResource> Tailnets);

/// <summary>Body of <c>POST /api/v1/tailnets</c>. Omitted settings take the defaults.</summary>
public sealed record CreateTailnetRequest(string Name, int? NodeKeyExpiryDays = null, string? DnsSuffix = null, int? EphemeralTimeoutSeconds = null, bool? KeylessRegistration = null);

/// <summary>Body of <c>PATCH /api/v1/tailnets/{tailnet}</c>. Omitted fields stay as they are.</summary>
public sealed record UpdateTailnetSettingsRequest(int? NodeKeyExpiryDays = null, string? DnsSuffix = null, int? EphemeralTimeoutSeconds = null, bool? KeylessRegistration = null);

/// <summary>Body of <c>POST /api/v1/tailnets/{tailnet}/rename</c>.</summary>
public sealed record RenameTailnetRequest(string Name);

/// <summary>Where a tailnet's entity lives now: the cluster address of the coordinator node hosting it.</summary>
/// <param name="Node">The node of the tailnet's entity.</param>
/// <param name="AuditNode">The node of the tailnet's audit log (placed beside it, unless the cluster is still settling after a change of members).</param>
public sealed record TailnetPlacementResource(string Tailnet, string Node, string AuditNode);

/// <summary>
/// A tailnet's OpenID Connect provider as the API shows it: the client secret is never returned
/// (<see cref="ClientSecretSet"/> says one is stored).
/// </summary>
/// <param name="RedirectUri">What to register at the provider as this tailnet's redirect (callback) URI.</param>
public sealed record SsoResource(
    string Issuer, string ClientId, bool ClientSecretSet, IReadOnlyList<string> AllowedDomains, IReadOnlyList<string> AllowedGroups,
    string GroupsClaim, IReadOnlyList<string> Scopes, string? RedirectUri = null);

/// <summary>The body of <c>PUT /api/v1/tailnets/{tailnet}/sso</c>.</summary>
public sealed record SetSsoRequest(
    string Issuer, string ClientId, string ClientSecret, IReadOnlyList<string>? AllowedDomains = null, IReadOnlyList<string>? AllowedGroups = null,
    string? GroupsClaim = null, IReadOnlyList<string>? Scopes = null)
{
    public override string ToString() => $"SetSsoRequest {{ Issuer = {Issuer}, ClientId = {ClientId}, ClientSecret = (secret) }}";
}
