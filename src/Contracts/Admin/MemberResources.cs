namespace Weft.Contracts.Admin;

// The admin API's view of what lives inside a tailnet: users, auth keys, devices, API keys.

/// <param name="Role">owner, admin, member or auditor.</param>
/// <param name="Issuer">The identity provider that vouches for this user (null: created by an admin, by name).</param>
/// <param name="Groups">The provider's groups at the last sign-in (<c>group:NAME</c> in the policy).</param>
public sealed record UserResource(
    string Id, string Name, DateTimeOffset CreatedAt, string Role = "member", string? Issuer = null, string? Subject = null, IReadOnlyList<string>? Groups = null,
    DateTimeOffset? LastSignIn = null);

public sealed record UserListResource(IReadOnlyList<UserResource> Users);

/// <summary>An auth key as listed: never its secret.</summary>
public sealed record AuthKeyResource(
    string Id, string? User, bool Reusable, bool Ephemeral, IReadOnlyList<string> Tags,
    DateTimeOffset CreatedAt, DateTimeOffset ExpiresAt, string Description, bool Revoked, bool Expired, int Uses);

/// <summary>The answer to creating an auth key: the only time its secret is shown.</summary>
public sealed record CreatedAuthKeyResource(string Key, AuthKeyResource AuthKey);

public sealed record AuthKeyListResource(IReadOnlyList<AuthKeyResource> AuthKeys);

/// <param name="EndpointsUnknown">
/// The endpoints and home relay shown are the last ones a coordinator snapshot held: the device's
/// agent has not reported them since the tailnet's entity restarted (they are soft state).
/// </param>
public sealed record DeviceResource(
    string Id, string Name, string Hostname, string Os, string Status, bool Online, string? User, IReadOnlyList<string> Tags,
    IReadOnlyList<string> Addresses, IReadOnlyList<string> Endpoints, int HomeRelay, string NodeKey, string MachineKey, string DiscoKey,
    DateTimeOffset? KeyExpiry, bool Ephemeral, DateTimeOffset CreatedAt, DateTimeOffset? LastSeen, string? AuthKey, string AgentVersion = "",
    string RegisteredFrom = "", DeviceRoutesResource? Routes = null, bool EndpointsUnknown = false);

/// <summary>
/// A device's routes: what its agent advertises, what is approved (by an admin or the policy's
/// autoApprovers), and what is in force (both), with whether it is an exit node in force.
/// </summary>
public sealed record DeviceRoutesResource(IReadOnlyList<string> Advertised, IReadOnlyList<string> Approved, IReadOnlyList<string> Enabled, bool ExitNode);

/// <summary>The answer to <c>DELETE /api/v1/tailnets/{tailnet}/devices?status=pending</c>: the devices that were waiting and are gone.</summary>
public sealed record DeletedDevicesResource(IReadOnlyList<string> Deleted);

/// <param name="NextCursor">When a page was asked (<c>?limit=</c>) and more devices follow: the <c>?cursor=</c> for the next page.</param>
public sealed record DeviceListResource(IReadOnlyList<DeviceResource> Devices, string? NextCursor = null);

/// <summary>
/// A device's netmap stream: the version its entity is at (what a current agent holds), whether an
/// agent's session is attached and on which coordinator node, whether a full map is on its way, and
/// the node that runs the device's entity (normally its tailnet's: <c>GET …/placement</c>).
/// </summary>
public sealed record DeviceStreamResource(ulong Version, bool Connected, string? Coordinator, bool AwaitingFullMap, string? EntityNode = null);

public sealed record ApiKeyResource(string Id, string Scope, string? Tailnet, string Description, DateTimeOffset CreatedAt);

/// <summary>The answer to creating an API key: the only time the key itself is shown.</summary>
public sealed record CreatedApiKeyResource(string Key, ApiKeyResource ApiKey);

public sealed record ApiKeyListResource(IReadOnlyList<ApiKeyResource> ApiKeys);

public sealed record PolicyResource(int Version, DateTimeOffset UpdatedAt);

public sealed record PolicyValidationResource(bool Valid, int Rules, int Tests);

/// <summary>The answer of <c>POST …/policy/test</c>: may src reach dst under the live policy, and by which rule.</summary>
public sealed record AccessCheckResource(bool Allowed, int? Rule, string Explanation);

/// <summary>Who calls the admin API: a person signed in to the console (kind "person", with their role), or an API key.</summary>
public sealed record SessionResource(string Kind, string? Tailnet, string? User, string? Email, string? Role);
