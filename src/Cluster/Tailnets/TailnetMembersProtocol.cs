using System.Collections.Immutable;
using Weft.Cluster.Messaging;

namespace Weft.Cluster.Tailnets;

// What a tailnet holds besides its settings: users, auth keys and the device index, with the
// commands, events and replies that change and read them. Keys are lowercase hex strings here.

/// <summary>
/// A person in the tailnet: one an admin created by name, or one the tailnet's identity provider
/// vouched for (<see cref="Issuer"/> and <see cref="Subject"/> are then their identity, and
/// <see cref="Name"/> their email).
/// </summary>
public sealed record TailnetUser(string UserId, string Name, DateTimeOffset CreatedAt)
{
    /// <summary>The provider that vouches for this user; "" for a user an admin created by name.</summary>
    public string Issuer { get; init; } = "";

    /// <summary>The provider's stable id for this user (the ID token's <c>sub</c>).</summary>
    public string Subject { get; init; } = "";

    /// <summary>The groups the provider listed at the last sign-in (the tailnet's groups claim): <c>group:NAME</c> in the policy.</summary>
    public ImmutableArray<string> Groups { get; init; } = [];

    public DateTimeOffset? LastSignIn { get; init; }

    /// <summary>What the user may do in the tailnet's admin console and API, and their autogroups in the policy.</summary>
    public UserRole Role { get; init; } = UserRole.Member;

    public bool FromProvider => Issuer.Length > 0;

    public bool Equals(TailnetUser? other) =>
        other is not null && UserId == other.UserId && Name == other.Name && CreatedAt == other.CreatedAt && Issuer == other.Issuer
        && Subject == other.Subject && Groups.SequenceEqual(other.Groups) && LastSignIn == other.LastSignIn && Role == other.Role;

    public override int GetHashCode() => UserId.GetHashCode();
}

/// <summary>
/// A user's role in their tailnet, as Tailscale's: the owner and admins administer it (the owner's role
/// only an owner or an operator changes), auditors read everything and change nothing, members use
/// their devices and have no admin access. In policies: <c>autogroup:owner</c>, <c>autogroup:admin</c>
/// (owners and admins), <c>autogroup:auditor</c> and <c>autogroup:member</c> (everyone).
/// </summary>
public enum UserRole
{
    Member = 0,
    Admin = 1,
    Owner = 2,
    Auditor = 3,
}

public static class UserRoles
{
    public static string Name(this UserRole role) => role.ToString().ToLowerInvariant();

    public static bool TryParse(string text, out UserRole role) =>
        Enum.TryParse(text, ignoreCase: true, out role) && Enum.IsDefined(role) && !int.TryParse(text, out _);

    /// <summary>May change the tailnet (its settings, policy, users, keys and devices).</summary>
    public static bool Administers(this UserRole role) => role is UserRole.Owner or UserRole.Admin;

    /// <summary>May read the tailnet's administration (the console, and GETs of the API).</summary>
    public static bool Reads(this UserRole role) => role is UserRole.Owner or UserRole.Admin or UserRole.Auditor;
}

/// <summary>A pre-authorisation key. Only a SHA-256 hash of its secret is kept.</summary>
public sealed record AuthKey(
    string KeyId, string SecretHash, string? UserId, bool Reusable, bool Ephemeral, ImmutableArray<string> Tags,
    DateTimeOffset CreatedAt, DateTimeOffset ExpiresAt, string Description, bool Revoked = false, int Uses = 0)
{
    public bool UsableAt(DateTimeOffset at) => !Revoked && at < ExpiresAt && (Reusable || Uses == 0);

    public bool Equals(AuthKey? other) =>
        other is not null && KeyId == other.KeyId && SecretHash == other.SecretHash && UserId == other.UserId && Reusable == other.Reusable
        && Ephemeral == other.Ephemeral && Tags.SequenceEqual(other.Tags) && CreatedAt == other.CreatedAt && ExpiresAt == other.ExpiresAt
        && Description == other.Description && Revoked == other.Revoked && Uses == other.Uses;

    public override int GetHashCode() => KeyId.GetHashCode();
}

public enum DeviceStatus
{
    /// <summary>Registered without a key; waits for an admin. Invisible to peers.</summary>
    Pending = 0,
    Active = 1,
    /// <summary>Its node key expired (or an admin expired it). Invisible to peers until re-authorised.</summary>
    Expired = 2,
}

/// <summary>One device as the tailnet indexes it: what its peers see, and what admins manage.</summary>
public sealed record DeviceEntry(
    string DeviceId,
    string MachineKey,
    string NodeKey,
    string DiscoKey,
    string Name,
    string Hostname,
    string Os,
    string? UserId,
    ImmutableArray<string> Tags,
    string Ipv4,
    string Ipv6,
    ImmutableArray<string> Endpoints,
    int HomeRelay,
    DateTimeOffset? KeyExpiry,
    bool Ephemeral,
    DeviceStatus Status,
    DateTimeOffset CreatedAt,
    DateTimeOffset? LastSeen,
    string? AuthKeyId,
    string AgentVersion = "",
    string RegisteredFrom = "",
    ImmutableArray<string> AdvertisedRoutes = default,
    ImmutableArray<string> ApprovedRoutes = default)
{
    [System.Text.Json.Serialization.JsonIgnore] // derived: not sent between nodes
    public bool IsActive => Status == DeviceStatus.Active;

    /// <summary>Active, with a node key whose expiry has come by <paramref name="at"/>: expired in all but the sweep's mark.</summary>
    public bool KeyLapsedBy(DateTimeOffset at) => IsActive && KeyExpiry is { } expiry && expiry <= at;

    /// <summary>
    /// The endpoints, home relay and disco key above are only what the last snapshot held: this
    /// tailnet incarnation has not heard the device report them (soft state, see <see cref="TailnetActor"/>).
    /// Netmaps say so instead of sending them. Not stored, and not part of equality.
    /// </summary>
    public bool EndpointsUnknown { get; init; }

    /// <summary>The version of the endpoints report held (see <see cref="UpdateDeviceEndpoints.Version"/>). Soft, like the endpoints.</summary>
    public long EndpointsVersion { get; init; }

    /// <summary>The routes the agent offers (subnets, and 0.0.0.0/0 and ::/0 for an exit node), canonical and sorted.</summary>
    public ImmutableArray<string> AdvertisedRoutes { get; init; } = AdvertisedRoutes.IsDefault ? [] : AdvertisedRoutes;

    /// <summary>The routes an admin or the policy's autoApprovers approved; they stay approved while not advertised.</summary>
    public ImmutableArray<string> ApprovedRoutes { get; init; } = ApprovedRoutes.IsDefault ? [] : ApprovedRoutes;

    /// <summary>The routes in force: advertised and approved (most devices route nothing: no allocation then).</summary>
    [System.Text.Json.Serialization.JsonIgnore] // derived: not sent between nodes
    public ImmutableArray<string> EnabledRoutes =>
        AdvertisedRoutes.IsEmpty || ApprovedRoutes.IsEmpty ? [] : [.. AdvertisedRoutes.Intersect(ApprovedRoutes, StringComparer.Ordinal)];

    /// <summary>Enabled subnet routes (exit routes excluded).</summary>
    [System.Text.Json.Serialization.JsonIgnore] // derived: not sent between nodes
    public ImmutableArray<string> SubnetRoutes => AdvertisedRoutes.IsEmpty ? [] : [.. EnabledRoutes.Where(r => !DeviceRoutes.IsExit(r))];

    /// <summary>An exit node in force: it advertises both exit routes and both are approved.</summary>
    [System.Text.Json.Serialization.JsonIgnore] // derived: not sent between nodes
    public bool IsExitNode => !AdvertisedRoutes.IsEmpty && DeviceRoutes.ExitRoutes.All(EnabledRoutes.Contains);

    public bool Equals(DeviceEntry? other) =>
        other is not null && DeviceId == other.DeviceId && MachineKey == other.MachineKey && NodeKey == other.NodeKey && DiscoKey == other.DiscoKey
        && Name == other.Name && Hostname == other.Hostname && Os == other.Os && UserId == other.UserId && Tags.SequenceEqual(other.Tags)
        && Ipv4 == other.Ipv4 && Ipv6 == other.Ipv6 && Endpoints.SequenceEqual(other.Endpoints) && HomeRelay == other.HomeRelay
        && KeyExpiry == other.KeyExpiry && Ephemeral == other.Ephemeral && Status == other.Status && CreatedAt == other.CreatedAt
        && LastSeen == other.LastSeen && AuthKeyId == other.AuthKeyId && AgentVersion == other.AgentVersion && RegisteredFrom == other.RegisteredFrom
        && AdvertisedRoutes.SequenceEqual(other.AdvertisedRoutes) && ApprovedRoutes.SequenceEqual(other.ApprovedRoutes);

    public override int GetHashCode() => DeviceId.GetHashCode();
}

// ---------------------------------------------------------------- commands

/// <summary>A tailnet command about one device.</summary>
public interface ITailnetDeviceCommand : ITailnetCommand
{
    string DeviceId { get; }
}

[WireName("tailnet.create-user")]
public sealed record CreateUser(string TailnetId, string UserId, string Name, DateTimeOffset At) : ITailnetCommand
{
    public UserRole Role { get; init; } = UserRole.Member;

    /// <summary>
    /// Asked by an owner or an operator: only they make an owner. False unless said (as in a message from a
    /// node of a version that did not send it): a restriction must not fall away for want of a field.
    /// </summary>
    public bool ByOwner { get; init; }
}

/// <summary>Gives a user a role. Only an owner (or an operator) makes or unmakes an owner (<paramref name="ByOwner"/>); the last owner stays one until another is made.</summary>
[WireName("tailnet.set-user-role")]
public sealed record SetUserRole(string TailnetId, string UserId, UserRole Role, bool ByOwner) : ITailnetCommand;

/// <summary>Deletes a user; only an owner (or an operator) deletes an owner (<paramref name="ByOwner"/>, false unless said, as for <see cref="CreateUser.ByOwner"/>).</summary>
[WireName("tailnet.delete-user")]
public sealed record DeleteUser(string TailnetId, string UserId, bool ByOwner = false) : ITailnetCommand;

[WireName("tailnet.create-auth-key")]
public sealed record CreateAuthKey(
    string TailnetId, string KeyId, string SecretHash, string? UserId, bool Reusable, bool Ephemeral,
    ImmutableArray<string> Tags, DateTimeOffset ExpiresAt, string Description, DateTimeOffset At) : ITailnetCommand;

[WireName("tailnet.revoke-auth-key")]
public sealed record RevokeAuthKey(string TailnetId, string KeyId) : ITailnetCommand;

/// <summary>
/// A device asks to join: with an auth key (KeyId and the hash of its secret), or without one, to
/// wait for approval. The same machine key always maps to the same device.
/// </summary>
[WireName("tailnet.register-device")]
public sealed record RegisterDevice(
    string TailnetId, string NewDeviceId, string MachineKey, string NodeKey, string DiscoKey, string Hostname, string Os,
    string? AuthKeyId, string? AuthKeySecretHash, DateTimeOffset At, string AgentVersion = "", string RegisteredFrom = "") : ITailnetCommand
{
    /// <summary>Without an auth key, in a tailnet with an identity provider: the id of the login link to issue if the device has no open one.</summary>
    public string? NewLoginId { get; init; }

    /// <summary>When that link expires.</summary>
    public DateTimeOffset LoginExpiresAt { get; init; }

    /// <summary>
    /// A reconnect that names the device it was (the agent's resume hint): registered only if this machine
    /// key's device in the tailnet is that one, and refused as not found otherwise, so that a stale hint
    /// never creates a device. Null for every other registration.
    /// </summary>
    public string? ResumeDeviceId { get; init; }
}

[WireName("tailnet.approve-device")]
public sealed record ApproveDevice(string TailnetId, string DeviceId, DateTimeOffset At) : ITailnetDeviceCommand;

[WireName("tailnet.rename-device")]
public sealed record RenameDevice(string TailnetId, string DeviceId, string Name) : ITailnetDeviceCommand;

[WireName("tailnet.set-device-tags")]
public sealed record SetDeviceTags(string TailnetId, string DeviceId, ImmutableArray<string> Tags, DateTimeOffset At) : ITailnetDeviceCommand;

[WireName("tailnet.expire-device")]
public sealed record ExpireDevice(string TailnetId, string DeviceId, DateTimeOffset At) : ITailnetDeviceCommand;

[WireName("tailnet.delete-device")]
public sealed record DeleteDevice(string TailnetId, string DeviceId) : ITailnetDeviceCommand;

/// <summary>Deletes those of <paramref name="DeviceIds"/> that are still waiting for approval (bulk clean-up of unwanted registrations).</summary>
[WireName("tailnet.delete-pending-devices")]
public sealed record DeletePendingDevices(string TailnetId, IReadOnlyList<string> DeviceIds) : ITailnetCommand;

/// <summary>Which of the devices asked about were deleted.</summary>
[WireName("tailnet.pending-devices-deleted")]
public sealed record PendingDevicesDeleted(string TailnetId, IReadOnlyList<string> DeviceIds) : IClusterMessage;

/// <summary>
/// From the device's entity, on behalf of its session: its endpoints, home relay or disco key
/// changed. Soft state, not journaled: the tailnet applies it in memory and fans it out at once, and
/// the device's entity reports it again whenever the tailnet restarts (see <see cref="TailnetActor"/>).
/// </summary>
[WireName("tailnet.update-device-endpoints")]
/// <param name="Version">When the session received the report (its clock, in ticks, increasing per session; 0: unversioned). The tailnet ignores a report older than the one it holds.</param>
public sealed record UpdateDeviceEndpoints(string TailnetId, string DeviceId, ImmutableArray<string> Endpoints, int HomeRelay, string DiscoKey, long Version = 0) : ITailnetDeviceCommand
{
    /// <summary>The same report, compared by content (records compare arrays by reference).</summary>
    public bool Repeats(UpdateDeviceEndpoints? other) =>
        other is not null && DeviceId == other.DeviceId && Version == other.Version && HomeRelay == other.HomeRelay && DiscoKey == other.DiscoKey
        && Endpoints.SequenceEqual(other.Endpoints);
}

/// <summary>From the device's entity, after it checked the proofs: the node key is replaced and its expiry restarts.</summary>
[WireName("tailnet.rotate-device-key")]
public sealed record RotateDeviceNodeKey(string TailnetId, string DeviceId, string OldNodeKey, string NewNodeKey, DateTimeOffset At) : ITailnetDeviceCommand;

/// <summary>The device's last session ended at <paramref name="At"/>.</summary>
/// <summary>What the agent reports about itself (hostname, OS, agent version); the device's name is the admin's and does not follow.</summary>
[WireName("tailnet.update-device-hostinfo")]
public sealed record UpdateDeviceHostinfo(string TailnetId, string DeviceId, string Hostname, string Os, string AgentVersion) : ITailnetDeviceCommand;

/// <summary>
/// From the agent: the routes it offers now (the whole list; empty withdraws them all). Routes that
/// the policy's autoApprovers cover are approved with it.
/// </summary>
[WireName("tailnet.advertise-device-routes")]
public sealed record AdvertiseDeviceRoutes(string TailnetId, string DeviceId, ImmutableArray<string> Routes) : ITailnetDeviceCommand;

/// <summary>An admin sets the device's approved routes (the whole list; empty approves none). Only advertised routes may be approved.</summary>
[WireName("tailnet.approve-device-routes")]
public sealed record ApproveDeviceRoutes(string TailnetId, string DeviceId, ImmutableArray<string> Routes) : ITailnetDeviceCommand;

[WireName("tailnet.device-seen")]
public sealed record RecordDeviceLastSeen(string TailnetId, string DeviceId, DateTimeOffset At) : ITailnetDeviceCommand;

/// <summary>Expires every device whose node key expired by <paramref name="At"/> (timer).</summary>
[WireName("tailnet.expire-due-keys")]
public sealed record ExpireDueKeys(string TailnetId, DateTimeOffset At) : ITailnetCommand;

/// <summary>
/// Forgets the devices that waited to be signed in (a tailnet with a provider) and were given up: their last
/// login link expired <see cref="TailnetState.AbandonedSignInAfter"/> ago or more (timer).
/// </summary>
[WireName("tailnet.forget-abandoned-sign-ins")]
public sealed record ForgetAbandonedSignIns(string TailnetId, DateTimeOffset At) : ITailnetCommand;

/// <summary>
/// Forgets the auth keys spent <see cref="TailnetState.SpentAuthKeyRetention"/> or more before <paramref name="At"/>
/// (expired that long ago, revoked or not): only their ids stay (timer).
/// </summary>
[WireName("tailnet.forget-spent-auth-keys")]
public sealed record ForgetSpentAuthKeys(string TailnetId, DateTimeOffset At) : ITailnetCommand;

/// <summary>Removes an ephemeral device that stayed offline for the tailnet's ephemeral timeout (timer).</summary>
[WireName("tailnet.remove-ephemeral")]
public sealed record RemoveEphemeralDevice(string TailnetId, string DeviceId, DateTimeOffset OfflineSince) : ITailnetDeviceCommand;

// ---------------------------------------------------------------- queries and replies

[WireName("tailnet.list-users")]
public sealed record ListUsers(string TailnetId) : ITailnetMessage;

[WireName("tailnet.list-auth-keys")]
public sealed record ListAuthKeys(string TailnetId) : ITailnetMessage;

/// <summary>
/// The tailnet's devices in id order, a page at a time: those after <see cref="After"/> (an id), no more
/// than <see cref="Limit"/>, and no more than half the remote frame limit of answer (<see cref="DevicePages"/>),
/// so a page crossing between nodes stays well below that limit whatever the tailnet's size.
/// A limit of 0 asks for every device in one answer (what nodes before paging asked; callers here page).
/// </summary>
[WireName("tailnet.list-devices")]
public sealed record ListDevices(string TailnetId) : ITailnetMessage
{
    public string? After { get; init; }
    public int Limit { get; init; }

    /// <summary>Only devices in this state (none: all).</summary>
    public DeviceStatus? Status { get; init; }
}

/// <summary>The device of the tailnet with this MagicDNS name (names are unique in a tailnet), or not found.</summary>
[WireName("tailnet.get-device-named")]
public sealed record GetDeviceNamed(string TailnetId, string Name) : ITailnetMessage;

[WireName("tailnet.get-device")]
public sealed record GetDevice(string TailnetId, string DeviceId) : ITailnetMessage;

/// <summary>
/// Asked for a relay (<see cref="Relays.RelayAccessChecker"/>) when tickets of this tailnet log in, and again for
/// its live connections: does a device of the tailnet still hold each of <paramref name="NodeKeys"/> (64 hex),
/// unexpired? Answered with <see cref="RelayAccess"/>; a deleted tailnet answers not found. Its wire names are new
/// since it took a batch (it was <c>tailnet.check-relay-access</c>, one key): during a rolling upgrade a node of the
/// other version drops the message it does not know, and the asking relay lets the ticket in, where reading the
/// other shape would have failed the tailnet entity or refused a key it holds.
/// </summary>
[WireName("tailnet.check-relay-keys")]
public sealed record CheckRelayAccess(string TailnetId, IReadOnlyList<string> NodeKeys) : ITailnetMessage;

/// <summary>Which devices may reach each other under the policy: the edges of the console's mesh view.</summary>
[WireName("tailnet.get-mesh")]
public sealed record GetMesh(string TailnetId) : ITailnetMessage;

/// <summary>One pair of devices the policy lets reach each other (either way), each pair once.</summary>
public sealed record MeshLink(string A, string B);

/// <param name="Complete">
/// False when the pairs are more than <see cref="MaxLinks"/>: then none are sent. Pairs grow with the square of the
/// devices (a tailnet of 50,000 under an allow-all policy has over a billion), and the console asks every second.
/// </param>
[WireName("tailnet.mesh")]
public sealed record MeshLinks(IReadOnlyList<MeshLink> Links, bool Complete = true) : IClusterMessage
{
    /// <summary>The most pairs a mesh answer lists (a graph with more is past drawing, and past a cluster frame).</summary>
    public const int MaxLinks = 20_000;
}

/// <summary>
/// Asks for a device's whole netmap; the answer is sent to the device's entity, in order with its changes.
/// <para>
/// <paramref name="Need"/> names what the entity asks for (its epoch and a counter; 0: not named), the
/// same in every repeat of one request. A busy tailnet can have a request and its repeats in its mailbox
/// at once; it answers a need once, since the answer travels in order with everything else it sends the
/// device. Every few repeats, one says when it was sent (<paramref name="ForcedAt"/>): if that was
/// long enough after the answer went out for it to have arrived, the answer was lost (a link between
/// nodes dropped it) and the need is answered again. A repeat that waited in the mailbox says nothing
/// of the sort, however late it is read.
/// </para>
/// </summary>
[WireName("tailnet.send-netmap")]
public sealed record SendNetMap(string TailnetId, string DeviceId, ulong Need = 0, DateTimeOffset? ForcedAt = null) : ITailnetMessage;

/// <summary>Asks for a device's whole netmap as a reply (admin debugging).</summary>
[WireName("tailnet.get-netmap")]
public sealed record GetNetMap(string TailnetId, string DeviceId) : ITailnetMessage;

/// <summary>Sessions come and go: the tailnet keeps who is online in memory and tells the device's peers.</summary>
/// <param name="HoldsEndpoints">
/// The device's entity holds endpoints from its agent. A tailnet that has them as unknown (its resync
/// to this device, or the report that answered it, was lost) asks for them again with
/// <see cref="Devices.ReportEndpointsAgain"/>: every attach sends this, so that takes one re-attach period at most.
/// </param>
[WireName("tailnet.device-online")]
public sealed record DeviceOnline(string TailnetId, string DeviceId, bool Online, DateTimeOffset At, bool HoldsEndpoints = false) : ITailnetMessage
{
    /// <summary>
    /// The last message the device's entity heard from a tailnet incarnation (none: none since it started, and the
    /// full map its next session gets covers the rest). Less than was sent a while ago: the rest was lost on the way.
    /// </summary>
    public Devices.FanOutStamp Heard { get; init; }
}

/// <summary>
/// From a device's entity, answering a new tailnet incarnation's resync: it has sent the tailnet
/// everything soft it holds for the device (presence, endpoints), so full maps may go out.
/// </summary>
[WireName("tailnet.device-reported-again")]
public sealed record DeviceReportedAgain(string TailnetId, string DeviceId) : ITailnetMessage;

[WireName("tailnet.users")]
public sealed record UserList(IReadOnlyList<TailnetUser> Users) : IClusterMessage;

[WireName("tailnet.user")]
public sealed record UserInfo(TailnetUser User) : IClusterMessage;

[WireName("tailnet.auth-keys")]
public sealed record AuthKeyList(IReadOnlyList<AuthKey> Keys) : IClusterMessage;

[WireName("tailnet.auth-key")]
public sealed record AuthKeyInfo(AuthKey Key) : IClusterMessage;

[WireName("tailnet.device")]
public sealed record DeviceInfo(DeviceEntry Device, bool Online) : IClusterMessage;

/// <param name="Allowed">For each key asked, in order: a device holds it and has not expired (it may be waiting for approval).</param>
[WireName("tailnet.relay-keys-access")]
public sealed record RelayAccess(IReadOnlyList<bool> Allowed) : IClusterMessage;

/// <param name="Next">The id to ask after for the following page; null when this page is the last.</param>
[WireName("tailnet.devices")]
public sealed record DeviceList(IReadOnlyList<DeviceInfo> Devices, string? Next = null) : IClusterMessage;

/// <summary>The tailnet's answer to a registration: the device as it now stands (pending or active).</summary>
[WireName("tailnet.registered")]
public sealed record DeviceRegistration(string TailnetId, DeviceEntry Device) : IClusterMessage
{
    /// <summary>The device waits for its person to sign in (a tailnet with an identity provider): the login link to show.</summary>
    public DeviceLogin? Login { get; init; }
}

/// <summary>A whole netmap (protobuf <c>NetMap</c> bytes, version not yet stamped).</summary>
[WireName("tailnet.netmap")]
public sealed record NetMapSnapshot(string TailnetId, string DeviceId, byte[] NetMap) : Devices.IDeviceMessage
{
    /// <summary>Its place among what the tailnet's incarnation sent this device (none: unnumbered).</summary>
    public Devices.FanOutStamp Stamp { get; init; }
}

[WireName("tailnet.deleted-device")]
public sealed record DeviceDeletedAck(string TailnetId, string DeviceId) : IClusterMessage;

// ---------------------------------------------------------------- events

public sealed record UserCreated(TailnetUser User) : ITailnetEvent;

public sealed record UserDeleted(string UserId) : ITailnetEvent;

public sealed record UserRoleChanged(string UserId, UserRole Role) : ITailnetEvent;

public sealed record AuthKeyCreated(AuthKey Key) : ITailnetEvent;

public sealed record AuthKeyRevoked(string KeyId) : ITailnetEvent;

public sealed record AuthKeyUsed(string KeyId) : ITailnetEvent;

/// <summary>Auth keys long spent: their records go, their ids stay (never issued again).</summary>
public sealed record AuthKeysForgotten(ImmutableArray<string> KeyIds) : ITailnetEvent;

public sealed record DeviceRegistered(DeviceEntry Device) : ITailnetEvent;

/// <summary>An existing device authenticated again with an auth key (for example after it expired).</summary>
public sealed record DeviceReauthorized(string DeviceId, string NodeKey, string DiscoKey, DateTimeOffset? KeyExpiry, string? UserId, ImmutableArray<string> Tags, string? AuthKeyId) : ITailnetEvent;

/// <summary>A pending device is admitted; it gets its address and name only now (empty: it kept the ones it had, from an older version).</summary>
public sealed record DeviceApproved(string DeviceId, DateTimeOffset? KeyExpiry, string Ipv4 = "", string Ipv6 = "", string Name = "") : ITailnetEvent;

public sealed record DeviceRenamed(string DeviceId, string Name) : ITailnetEvent;

public sealed record DeviceTagsChanged(string DeviceId, ImmutableArray<string> Tags, DateTimeOffset? KeyExpiry) : ITailnetEvent;

public sealed record DeviceExpired(string DeviceId, DateTimeOffset At) : ITailnetEvent;

public sealed record DeviceDeleted(string DeviceId) : ITailnetEvent;

public sealed record DeviceEndpointsChanged(string DeviceId, ImmutableArray<string> Endpoints, int HomeRelay, string DiscoKey) : ITailnetEvent;

public sealed record DeviceNodeKeyRotated(string DeviceId, string NodeKey, DateTimeOffset? KeyExpiry) : ITailnetEvent;

public sealed record DeviceLastSeen(string DeviceId, DateTimeOffset At) : ITailnetEvent;

public sealed record DeviceHostinfoChanged(string DeviceId, string Hostname, string Os, string AgentVersion) : ITailnetEvent;

public sealed record DeviceRoutesAdvertised(string DeviceId, ImmutableArray<string> Routes) : ITailnetEvent;

public sealed record DeviceRoutesApproved(string DeviceId, ImmutableArray<string> Routes) : ITailnetEvent;
