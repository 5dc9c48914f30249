using System.Collections.Immutable;
using System.Net;
using Weft.Cluster.Persistence;
using Weft.Cluster.Policy;
using Weft.Contracts.Control;

namespace Weft.Cluster.Tailnets;

// Users, auth keys, the device index and address allocation of a tailnet.
public sealed partial record TailnetState
{
    /// <summary>100.64.0.0/10 (RFC 6598 shared address space), the tailnet's IPv4 pool.</summary>
    public const int Ipv4PoolSize = 1 << 22;
    public const string Ipv6Prefix = "fd7a:115c:a1e0::";
    public const int MaxEndpoints = 32;
    public static readonly TimeSpan MaxAuthKeyLifetime = TimeSpan.FromDays(365);

    /// <summary>
    /// How long an expired auth key stays listed (with its description, uses and who made it) before only its
    /// id is kept. A key per CI job, as Tailscale's docs advise, would otherwise grow the tailnet's state, its
    /// snapshots and its key listing by one record a job, for good.
    /// </summary>
    public static readonly TimeSpan SpentAuthKeyRetention = TimeSpan.FromDays(30);

    /// <summary>At most this many keys are forgotten in one event (the rest at the next housekeeping).</summary>
    private const int ForgottenPerEvent = 1_000;

    /// <summary>At most this many devices wait for approval in one tailnet; delete some (or approve them) to admit more.</summary>
    public const int MaxPendingDevices = 100;

    /// <summary>At most this many new devices per <see cref="PendingWindow"/> start waiting for approval.</summary>
    public const int MaxPendingPerWindow = 20;

    public static readonly TimeSpan PendingWindow = TimeSpan.FromMinutes(1);

    public ImmutableSortedDictionary<string, TailnetUser> Users { get; init; } = ImmutableSortedDictionary<string, TailnetUser>.Empty;

    /// <summary>
    /// The ids of deleted users. A creation with an Idempotency-Key names the same user id every time it is
    /// sent, so a late retry (or a script run again) would bring a deleted user back; with these kept, it is refused.
    /// </summary>
    public ImmutableSortedSet<string> DeletedUserIds { get; init; } = ImmutableSortedSet.Create<string>(StringComparer.Ordinal);

    public ImmutableSortedDictionary<string, AuthKey> AuthKeys { get; init; } = ImmutableSortedDictionary<string, AuthKey>.Empty;

    /// <summary>The ids of auth keys forgotten (<see cref="SpentAuthKeyRetention"/>): a creation sent again with the Idempotency-Key that named one is refused.</summary>
    public ImmutableSortedSet<string> ForgottenAuthKeyIds { get; init; } = ImmutableSortedSet.Create<string>(StringComparer.Ordinal);

    /// <summary>The auth keys spent long enough before <paramref name="at"/> to be forgotten.</summary>
    public IEnumerable<string> SpentAuthKeys(DateTimeOffset at) => AuthKeys.Values.Where(k => k.ExpiresAt + SpentAuthKeyRetention <= at).Select(k => k.KeyId);

    public ImmutableSortedDictionary<string, DeviceEntry> Devices { get; init; } = ImmutableSortedDictionary<string, DeviceEntry>.Empty;

    /// <summary>Where the search for the next free IPv4 offset starts (addresses are not reused at once).</summary>
    public int NextAddressOffset { get; init; } = 1;

    public bool Equals(TailnetState? other) =>
        other is not null && TailnetId == other.TailnetId && Lifecycle == other.Lifecycle && Settings == other.Settings && CreatedAt == other.CreatedAt
        && Users.SequenceEqual(other.Users) && DeletedUserIds.SequenceEqual(other.DeletedUserIds) && AuthKeys.SequenceEqual(other.AuthKeys) && ForgottenAuthKeyIds.SequenceEqual(other.ForgottenAuthKeyIds) && Devices.SequenceEqual(other.Devices)
        && NextAddressOffset == other.NextAddressOffset && PolicyText == other.PolicyText && PolicyVersion == other.PolicyVersion
        && PolicyUpdatedAt == other.PolicyUpdatedAt && Equals(Sso, other.Sso) && Logins.SequenceEqual(other.Logins);

    public override int GetHashCode() => HashCode.Combine(TailnetId, Lifecycle, Devices.Count);

    /// <summary>
    /// Whether a relay may let each of <paramref name="nodeKeys"/> in: a device holds it and has not expired. A key
    /// rotated away, a deleted device and an expired one are all out, as their tickets were revoked. One pass over
    /// the devices for the whole batch.
    /// </summary>
    public RelayAccess RelayAccessFor(IReadOnlyList<string> nodeKeys)
    {
        var asked = nodeKeys.ToHashSet(StringComparer.Ordinal);
        var held = new HashSet<string>(StringComparer.Ordinal);
        foreach (var device in Devices.Values)
            if (device.Status != DeviceStatus.Expired && asked.Contains(device.NodeKey)) held.Add(device.NodeKey);
        return new RelayAccess([.. nodeKeys.Select(held.Contains)]);
    }

    public DeviceEntry? FindByMachineKey(string machineKey)
    {
        foreach (var (_, device) in Devices)
            if (device.MachineKey == machineKey) return device;
        return null;
    }

    public DateTimeOffset? KeyExpiryFor(DateTimeOffset from, ImmutableArray<string> tags) =>
        tags.IsDefaultOrEmpty ? from.AddDays(Settings.NodeKeyExpiryDays) : null; // tagged devices do not expire

    private Decision<ITailnetEvent> ProcessMembers(ITailnetCommand command) => command switch
    {
        CreateUser c => CreateUserDecision(c),
        DeleteUser c => DeleteUserDecision(c),
        SetUserRole c => SetRoleDecision(c),
        CreateAuthKey c => CreateAuthKeyDecision(c),
        RevokeAuthKey c => AuthKeys.TryGetValue(c.KeyId, out var key)
            ? key.Revoked ? Decision<ITailnetEvent>.Unchanged : Decision<ITailnetEvent>.Accept(new AuthKeyRevoked(c.KeyId))
            : Decision<ITailnetEvent>.Reject(Rejection.NotFound($"auth key {c.KeyId} does not exist")),
        RegisterDevice c => RegisterDecision(c),
        CompleteDeviceLogin c => CompleteLoginDecision(c),
        SignInUser c => ConsoleSignInDecision(c),
        ApproveDevice c => WithDevice(c.DeviceId, d => d.Status switch
        {
            DeviceStatus.Pending => Decision<ITailnetEvent>.Accept(Approved(d, c.At)),
            DeviceStatus.Active => Decision<ITailnetEvent>.Unchanged,
            _ => Decision<ITailnetEvent>.Reject(Rejection.Conflict($"device {d.DeviceId} is expired; it must register again with an auth key")),
        }),
        RenameDevice c => WithDevice(c.DeviceId, d => RenameDecision(d, c.Name)),
        SetDeviceTags c => WithDevice(c.DeviceId, d => SetTagsDecision(d, c)),
        ExpireDevice c => WithDevice(c.DeviceId, d => d.Status == DeviceStatus.Expired
            ? Decision<ITailnetEvent>.Unchanged
            : Decision<ITailnetEvent>.Accept(new DeviceExpired(d.DeviceId, c.At))),
        DeleteDevice c => WithDevice(c.DeviceId, d => Decision<ITailnetEvent>.Accept(new DeviceDeleted(d.DeviceId))),
        DeletePendingDevices c => Decision<ITailnetEvent>.Accept(c.DeviceIds.Distinct()
            .Where(id => Devices.TryGetValue(id, out var d) && d.Status == DeviceStatus.Pending)
            .Select(id => (ITailnetEvent)new DeviceDeleted(id)).ToList()),
        UpdateDeviceEndpoints c => WithDevice(c.DeviceId, d => EndpointsDecision(d, c)),
        RotateDeviceNodeKey c => WithDevice(c.DeviceId, d => RotateDecision(d, c)),
        RecordDeviceLastSeen c => WithDevice(c.DeviceId, d => Decision<ITailnetEvent>.Accept(new DeviceLastSeen(d.DeviceId, c.At))),
        UpdateDeviceHostinfo c => WithDevice(c.DeviceId, d => d.Hostname == c.Hostname && d.Os == c.Os && d.AgentVersion == c.AgentVersion
            ? Decision<ITailnetEvent>.Unchanged
            : Decision<ITailnetEvent>.Accept(new DeviceHostinfoChanged(d.DeviceId, c.Hostname, c.Os, c.AgentVersion))),
        AdvertiseDeviceRoutes c => WithDevice(c.DeviceId, d => AdvertiseRoutesDecision(d, c)),
        ApproveDeviceRoutes c => WithDevice(c.DeviceId, d => ApproveRoutesDecision(d, c)),
        ExpireDueKeys c => Decision<ITailnetEvent>.Accept(Devices.Values
            .Where(d => d.KeyLapsedBy(c.At))
            .Select(d => (ITailnetEvent)new DeviceExpired(d.DeviceId, c.At)).ToList()),
        ForgetAbandonedSignIns c => Decision<ITailnetEvent>.Accept(AbandonedSignIns(c.At).Select(id => (ITailnetEvent)new DeviceDeleted(id)).ToList()),
        ForgetSpentAuthKeys c => SpentAuthKeys(c.At).Take(ForgottenPerEvent).ToImmutableArray() is { IsEmpty: false } spent
            ? Decision<ITailnetEvent>.Accept(new AuthKeysForgotten(spent))
            : Decision<ITailnetEvent>.Unchanged,
        RemoveEphemeralDevice c => Devices.TryGetValue(c.DeviceId, out var device) && device.Ephemeral
            ? Decision<ITailnetEvent>.Accept(new DeviceDeleted(device.DeviceId))
            : Decision<ITailnetEvent>.Unchanged,
        _ => throw new ArgumentOutOfRangeException(nameof(command), command.GetType().Name, "not a tailnet command"),
    };

    private TailnetState ApplyMembers(ITailnetEvent @event) => @event switch
    {
        UserCreated e => this with { Users = Users.SetItem(e.User.UserId, e.User), _policy = null },
        UserDeleted e => this with { Users = Users.Remove(e.UserId), DeletedUserIds = DeletedUserIds.Add(e.UserId), _policy = null },
        UserRoleChanged e => this with { Users = Users.SetItem(e.UserId, Users[e.UserId] with { Role = e.Role }), _policy = null }, // roles are autogroups
        AuthKeyCreated e => this with { AuthKeys = AuthKeys.SetItem(e.Key.KeyId, e.Key) },
        AuthKeyRevoked e => this with { AuthKeys = AuthKeys.SetItem(e.KeyId, AuthKeys[e.KeyId] with { Revoked = true }) },
        AuthKeyUsed e => this with { AuthKeys = AuthKeys.SetItem(e.KeyId, AuthKeys[e.KeyId] with { Uses = AuthKeys[e.KeyId].Uses + 1 }) },
        AuthKeysForgotten e => this with { AuthKeys = AuthKeys.RemoveRange(e.KeyIds), ForgottenAuthKeyIds = ForgottenAuthKeyIds.Union(e.KeyIds) },
        DeviceRegistered e => this with
        {
            Devices = Devices.SetItem(e.Device.DeviceId, e.Device),
            NextAddressOffset = e.Device.Ipv4.Length == 0 ? NextAddressOffset : OffsetOf(e.Device.Ipv4) % Ipv4PoolSize + 1,
        },
        DeviceReauthorized e => UpdateDevice(e.DeviceId, d => d with
        {
            NodeKey = e.NodeKey, DiscoKey = e.DiscoKey, KeyExpiry = e.KeyExpiry, UserId = e.UserId, Tags = e.Tags,
            AuthKeyId = e.AuthKeyId, Status = DeviceStatus.Active,
        }),
        DeviceApproved e => UpdateDevice(e.DeviceId, d => d with
        {
            Status = DeviceStatus.Active, KeyExpiry = e.KeyExpiry,
            Ipv4 = e.Ipv4.Length > 0 ? e.Ipv4 : d.Ipv4, Ipv6 = e.Ipv6.Length > 0 ? e.Ipv6 : d.Ipv6, Name = e.Name.Length > 0 ? e.Name : d.Name,
        }) with { NextAddressOffset = e.Ipv4.Length == 0 ? NextAddressOffset : OffsetOf(e.Ipv4) % Ipv4PoolSize + 1 },
        DeviceRenamed e => UpdateDevice(e.DeviceId, d => d with { Name = e.Name }),
        DeviceTagsChanged e => UpdateDevice(e.DeviceId, d => d with { Tags = e.Tags, KeyExpiry = e.KeyExpiry }),
        DeviceExpired e => UpdateDevice(e.DeviceId, d => d with { Status = DeviceStatus.Expired }),
        DeviceDeleted e => this with
        {
            Devices = Devices.Remove(e.DeviceId),
            Logins = Logins.RemoveRange(Logins.Values.Where(l => l.DeviceId == e.DeviceId).Select(l => l.LoginId)),
        },
        DeviceLoginStarted or DeviceLoginCompleted or UserSignedIn => ApplyLogins(@event),
        DeviceEndpointsChanged e => UpdateDevice(e.DeviceId, d => d with { Endpoints = e.Endpoints, HomeRelay = e.HomeRelay, DiscoKey = e.DiscoKey }),
        DeviceNodeKeyRotated e => UpdateDevice(e.DeviceId, d => d with { NodeKey = e.NodeKey, KeyExpiry = e.KeyExpiry }),
        DeviceLastSeen e => UpdateDevice(e.DeviceId, d => d with { LastSeen = e.At }),
        DeviceHostinfoChanged e => UpdateDevice(e.DeviceId, d => d with { Hostname = e.Hostname, Os = e.Os, AgentVersion = e.AgentVersion }),
        DeviceRoutesAdvertised e => UpdateDevice(e.DeviceId, d => d with { AdvertisedRoutes = e.Routes }),
        DeviceRoutesApproved e => UpdateDevice(e.DeviceId, d => d with { ApprovedRoutes = e.Routes }),
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not a tailnet event"),
    };

    /// <summary>A new incarnation has heard no device's soft state yet (see <see cref="DeviceEntry.EndpointsUnknown"/>).</summary>
    public TailnetState WithEndpointsUnknown() =>
        this with { Devices = Devices.ToImmutableSortedDictionary(kv => kv.Key, kv => kv.Value with { EndpointsUnknown = true }, Devices.KeyComparer) };

    /// <summary>The device reported its endpoints to this incarnation, at <paramref name="version"/>.</summary>
    public TailnetState WithEndpointsReported(string deviceId, long version) =>
        Devices.TryGetValue(deviceId, out var device)
            // Not SetItem: neither field is part of equality, so SetItem would keep the old entry.
            ? this with { Devices = Devices.Remove(deviceId).Add(deviceId, device with { EndpointsUnknown = false, EndpointsVersion = version }) }
            : this;

    private TailnetState UpdateDevice(string deviceId, Func<DeviceEntry, DeviceEntry> change) =>
        this with { Devices = Devices.SetItem(deviceId, change(Devices[deviceId])) };

    private Decision<ITailnetEvent> WithDevice(string deviceId, Func<DeviceEntry, Decision<ITailnetEvent>> decide) =>
        Devices.TryGetValue(deviceId, out var device)
            ? decide(device)
            : Decision<ITailnetEvent>.Reject(Rejection.NotFound($"device {deviceId} does not exist"));

    private Decision<ITailnetEvent> CreateUserDecision(CreateUser c)
    {
        if (TailnetRules.CheckUserName(c.Name) is { } invalid) return Decision<ITailnetEvent>.Reject(invalid);
        // The same request again (a retry after a timeout, or a repeated Idempotency-Key) is answered as the first one was.
        if (Users.TryGetValue(c.UserId, out var same))
            return same.Name == c.Name ? Decision<ITailnetEvent>.Unchanged : Decision<ITailnetEvent>.Reject(IdTaken("user", c.UserId));
        if (DeletedUserIds.Contains(c.UserId))
            return Decision<ITailnetEvent>.Reject(Rejection.Conflict(
                $"user {c.UserId} was deleted and is not created again (a creation sent again with the Idempotency-Key that created it names it); use a new key"));
        if (Users.Values.Any(u => string.Equals(u.Name, c.Name, StringComparison.OrdinalIgnoreCase)))
            return Decision<ITailnetEvent>.Reject(Rejection.Conflict($"a user named '{c.Name}' already exists"));
        if (c.Role == UserRole.Owner && !c.ByOwner)
            return Decision<ITailnetEvent>.Reject(new Rejection(Contracts.Admin.ApiErrorCodes.Forbidden, "only an owner (or an operator) makes an owner"));
        return Decision<ITailnetEvent>.Accept(new UserCreated(new TailnetUser(c.UserId, c.Name, c.At) { Role = c.Role }));
    }

    private Decision<ITailnetEvent> DeleteUserDecision(DeleteUser c)
    {
        if (!Users.TryGetValue(c.UserId, out var user)) return Decision<ITailnetEvent>.Reject(Rejection.NotFound($"user {c.UserId} does not exist"));
        // As for a change of role: only an owner unmakes an owner, and the last one stays.
        if (user.Role == UserRole.Owner && !c.ByOwner)
            return Decision<ITailnetEvent>.Reject(new Rejection(Contracts.Admin.ApiErrorCodes.Forbidden, "only an owner (or an operator) deletes an owner"));
        if (user.Role == UserRole.Owner && Users.Values.Count(u => u.Role == UserRole.Owner) == 1)
            return Decision<ITailnetEvent>.Reject(Rejection.Conflict($"{user.Name} is the tailnet's only owner; make another user owner first"));
        var owned = Devices.Values.Count(d => d.UserId == c.UserId);
        if (owned > 0) return Decision<ITailnetEvent>.Reject(Rejection.Conflict($"user {c.UserId} still owns {owned} device(s); delete or tag them first"));
        // The user's keys stop working with the user.
        var events = AuthKeys.Values.Where(k => k.UserId == c.UserId && !k.Revoked).Select(k => (ITailnetEvent)new AuthKeyRevoked(k.KeyId)).ToList();
        events.Add(new UserDeleted(c.UserId));
        return Decision<ITailnetEvent>.Accept(events);
    }

    private Decision<ITailnetEvent> SetRoleDecision(SetUserRole c)
    {
        if (!Users.TryGetValue(c.UserId, out var user)) return Decision<ITailnetEvent>.Reject(Rejection.NotFound($"user {c.UserId} does not exist"));
        if (user.Role == c.Role) return Decision<ITailnetEvent>.Unchanged;
        if ((user.Role == UserRole.Owner || c.Role == UserRole.Owner) && !c.ByOwner)
            return Decision<ITailnetEvent>.Reject(new Rejection(Contracts.Admin.ApiErrorCodes.Forbidden, "only an owner (or an operator) makes or unmakes an owner"));
        if (user.Role == UserRole.Owner && Users.Values.Count(u => u.Role == UserRole.Owner) == 1)
            return Decision<ITailnetEvent>.Reject(Rejection.Conflict($"{user.Name} is the tailnet's only owner; make another user owner first"));
        return Decision<ITailnetEvent>.Accept(new UserRoleChanged(c.UserId, c.Role));
    }

    private Decision<ITailnetEvent> CreateAuthKeyDecision(CreateAuthKey c)
    {
        if (AuthKeys.TryGetValue(c.KeyId, out var same))
        {
            if (same.SecretHash != c.SecretHash) return Decision<ITailnetEvent>.Reject(IdTaken("auth key", c.KeyId));
            // Sent again after a revocation, it must not answer "created" with a secret that no longer admits anyone.
            return same.Revoked
                ? Decision<ITailnetEvent>.Reject(Rejection.Conflict(
                    $"auth key {c.KeyId} was revoked and is not issued again (a creation sent again with the Idempotency-Key that created it names it); use a new key"))
                : Decision<ITailnetEvent>.Unchanged;
        }
        if (ForgottenAuthKeyIds.Contains(c.KeyId))
            return Decision<ITailnetEvent>.Reject(Rejection.Conflict(
                $"auth key {c.KeyId} expired long ago and is not issued again (a creation sent again with the Idempotency-Key that created it names it); use a new key"));
        if (c.UserId is not null && !Users.ContainsKey(c.UserId)) return Decision<ITailnetEvent>.Reject(Rejection.NotFound($"user {c.UserId} does not exist"));
        if (TailnetRules.CheckTags(c.Tags) is { } badTags) return Decision<ITailnetEvent>.Reject(badTags);
        if (CheckTagsDefined(c.Tags) is { } undefined) return Decision<ITailnetEvent>.Reject(undefined);
        // A key made for a user carries only tags that user owns; one made by an admin alone, any defined tag (as Tailscale's admins).
        if (c.UserId is not null && !c.Tags.IsDefaultOrEmpty)
        {
            var owner = Users[c.UserId].Name;
            if (c.Tags.FirstOrDefault(t => !TagOwnership.Owns(Policy.TagOwners, Policy.Groups, owner, t)) is { } notOwned)
                return Decision<ITailnetEvent>.Reject(Rejection.Invalid(
                    $"{owner} does not own {notOwned}: the policy's tagOwners gives it to {OwnersText(notOwned)}; create the key without a user, or add {owner} to its owners"));
        }
        if (c.ExpiresAt <= c.At || c.ExpiresAt > c.At + MaxAuthKeyLifetime)
            return Decision<ITailnetEvent>.Reject(Rejection.Invalid($"an auth key expires between now and {MaxAuthKeyLifetime.TotalDays:0} days from now"));
        if (c.Description.Length > 256) return Decision<ITailnetEvent>.Reject(Rejection.Invalid("description is limited to 256 characters"));
        var key = new AuthKey(c.KeyId, c.SecretHash, c.UserId, c.Reusable, c.Ephemeral, c.Tags.Distinct().Order().ToImmutableArray(), c.At, c.ExpiresAt, c.Description);
        return Decision<ITailnetEvent>.Accept(new AuthKeyCreated(key));
    }

    /// <summary>As Tailscale: a tag exists once the policy's tagOwners defines it, and only then may a key or a device carry it.</summary>
    private Rejection? CheckTagsDefined(IEnumerable<string> tags) =>
        tags.FirstOrDefault(t => !Policy.TagOwners.ContainsKey(t)) is { } undefined
            ? Rejection.Invalid($"{undefined} is not defined in the policy's tagOwners; define it there first (defined: {(Policy.TagOwners.IsEmpty ? "none" : string.Join(", ", Policy.TagOwners.Keys))})")
            : null;

    /// <summary>
    /// The policy as it is now, not as it was when the key was made, decides the tags a key gives: each must
    /// still be defined, and a key made for a user must still be that user's to give (as Tailscale checks
    /// the tags at every login). A key made by an admin alone gives any defined tag.
    /// </summary>
    private string? TagsNoLongerPermitted(AuthKey key)
    {
        if (key.Tags.IsDefaultOrEmpty) return null;
        if (key.Tags.FirstOrDefault(t => !Policy.TagOwners.ContainsKey(t)) is { } undefined)
            return $"requested tags are not permitted: auth key {key.KeyId} carries {undefined}, which the policy's tagOwners no longer defines; define it again or use another key";
        if (key.UserId is not null && Users.TryGetValue(key.UserId, out var user)
            && key.Tags.FirstOrDefault(t => !TagOwnership.Owns(Policy.TagOwners, Policy.Groups, user.Name, t)) is { } notOwned)
            return $"requested tags are not permitted: auth key {key.KeyId} was made for {user.Name}, who no longer owns {notOwned} (the policy's tagOwners gives it to {OwnersText(notOwned)}); use another key";
        return null;
    }

    private string OwnersText(string tag) => Policy.TagOwners[tag] is { IsEmpty: false } owners ? string.Join(", ", owners) : "admins only";

    private Decision<ITailnetEvent> RegisterDecision(RegisterDevice c)
    {
        static Decision<ITailnetEvent> Refuse(string code, string message) => Decision<ITailnetEvent>.Reject(new Rejection(code, message));

        var scan = ScanFor(c);
        var existing = scan.SameMachine;
        if (c.ResumeDeviceId is not null && existing?.DeviceId != c.ResumeDeviceId)
            return Decision<ITailnetEvent>.Reject(Rejection.NotFound($"device {c.ResumeDeviceId} is not this machine's device in tailnet {TailnetId}"));
        if (scan.NodeKeyElsewhere)
            return Refuse(ControlErrorCodes.NodeKeyInUse, "another device already uses this node key");

        if (c.AuthKeyId is null)
        {
            // No key, and the tailnet has an identity provider: its person signs in to admit it.
            if (Sso is not null) return InteractiveRegisterDecision(existing, c);
            if (existing is null)
            {
                // No key: join as pending, for an admin to approve, if this tailnet allows it and is not flooded with such joins.
                if (!Settings.KeylessRegistration)
                    return Refuse(ControlErrorCodes.AuthKeyUnknown, "this tailnet admits devices only with an auth key");
                if (PendingFlood(c.At) is { } flooded) return Decision<ITailnetEvent>.Reject(flooded);
                var pending = NewDevice(c, DeviceStatus.Pending, userId: null, tags: [], ephemeral: false, keyExpiry: null, authKeyId: null);
                return Decision<ITailnetEvent>.Accept(new DeviceRegistered(pending));
            }
            if (existing.Status == DeviceStatus.Expired || existing.KeyLapsedBy(c.At))
                return Refuse(ControlErrorCodes.DeviceExpired, TailnetRules.ExpiredDeviceMessage);
            if (existing.NodeKey != c.NodeKey)
                return Refuse(ControlErrorCodes.NodeKeyMismatch, "this device is registered with another node key; it changes its key through RotateNodeKey, or re-registers with an auth key");
            // The same device asking again (a reconnect): only what it reports about itself may have changed.
            return Reported(existing, c);
        }

        if (!AuthKeys.TryGetValue(c.AuthKeyId, out var key) || key.SecretHash != c.AuthKeySecretHash)
            return Refuse(ControlErrorCodes.AuthKeyUnknown, "the auth key is not valid for this tailnet");
        // The same registration again (its answer was lost to a timeout or a failover): the device it made, the key not used twice.
        // (Unless its node key lapsed since, and the sweep has not marked it yet: then the key re-authorizes it, as below.)
        if (existing is { Status: DeviceStatus.Active } same && same.AuthKeyId == key.KeyId && same.NodeKey == c.NodeKey && !same.KeyLapsedBy(c.At))
            return Reported(same, c);
        if (key.Revoked) return Refuse(ControlErrorCodes.AuthKeyRevoked, $"auth key {key.KeyId} was revoked");
        if (c.At >= key.ExpiresAt) return Refuse(ControlErrorCodes.AuthKeyExpired, $"auth key {key.KeyId} expired at {key.ExpiresAt:u}");
        if (!key.Reusable && key.Uses > 0) return Refuse(ControlErrorCodes.AuthKeyUsed, $"auth key {key.KeyId} was for one use only and has been used");
        if (TagsNoLongerPermitted(key) is { } notPermitted) return Refuse(ControlErrorCodes.AuthKeyTagsNotPermitted, notPermitted);

        var tags = key.Tags;
        var used = new AuthKeyUsed(key.KeyId);
        if (existing is not null)
        {
            var reauthorized = new DeviceReauthorized(existing.DeviceId, c.NodeKey, c.DiscoKey, KeyExpiryFor(c.At, tags), tags.IsDefaultOrEmpty ? key.UserId : null, tags, key.KeyId);
            var events = new List<ITailnetEvent>(4);
            // A device that waited for approval has no address and no name yet: the key admits it, so it gets them first.
            if (existing.Ipv4.Length == 0) events.Add(Approved(existing, c.At));
            events.Add(reauthorized);
            events.Add(used);
            if (HostinfoChanged(existing, c) is { } reported) events.Add(reported);
            return Decision<ITailnetEvent>.Accept(events);
        }
        var device = NewDevice(c, DeviceStatus.Active, tags.IsDefaultOrEmpty ? key.UserId : null, tags, key.Ephemeral, KeyExpiryFor(c.At, tags), key.KeyId, scan);
        return Decision<ITailnetEvent>.Accept(new DeviceRegistered(device), used);
    }

    /// <summary>
    /// What a reconnecting device reports about itself: its host info, and its disco key, which is new
    /// after every agent restart. Peers learn the new disco key at once, so that the agent's first
    /// disco pings are answered rather than ignored until its first endpoint report.
    /// </summary>
    private static Decision<ITailnetEvent> Reported(DeviceEntry device, RegisterDevice c)
    {
        var events = new List<ITailnetEvent>(2);
        if (HostinfoChanged(device, c) is { } hostinfo) events.Add(hostinfo);
        if (c.DiscoKey.Length > 0 && c.DiscoKey != device.DiscoKey)
            events.Add(new DeviceEndpointsChanged(device.DeviceId, device.Endpoints, device.HomeRelay, c.DiscoKey));
        return events.Count == 0 ? Decision<ITailnetEvent>.Unchanged : Decision<ITailnetEvent>.Accept(events);
    }

    private static DeviceHostinfoChanged? HostinfoChanged(DeviceEntry device, RegisterDevice c) =>
        device.Hostname == c.Hostname && device.Os == c.Os && device.AgentVersion == c.AgentVersion
            ? null
            : new DeviceHostinfoChanged(device.DeviceId, c.Hostname, c.Os, c.AgentVersion);

    /// <summary>An id chosen for a new object is in use by a different one: a reused Idempotency-Key, or (never in practice) a random id collision.</summary>
    public static Rejection IdTaken(string what, string id) =>
        Rejection.Conflict($"{what} id {id} belongs to a different {what}: was an Idempotency-Key reused for another request?");

    /// <summary>A new device; one that waits for approval takes no address and no name (no squatting on either) until it is approved.</summary>
    private DeviceEntry NewDevice(RegisterDevice c, DeviceStatus status, string? userId, ImmutableArray<string> tags, bool ephemeral, DateTimeOffset? keyExpiry, string? authKeyId,
        RegistrationScan? scan = null)
    {
        var pending = status == DeviceStatus.Pending;
        var ipv4 = pending ? "" : Ipv4At(FreeAddressOffset(scan?.NextAddressTaken));
        return new DeviceEntry(
            c.NewDeviceId, c.MachineKey, c.NodeKey, c.DiscoKey, pending ? "" : UniqueName(TailnetRules.DeviceNameFrom(c.Hostname), c.NewDeviceId, scan?.NameTaken),
            c.Hostname, c.Os, userId, tags.IsDefault ? [] : tags, ipv4, pending ? "" : Ipv6For(ipv4), [], 0, keyExpiry, ephemeral, status, c.At, null, authKeyId,
            c.AgentVersion, c.RegisteredFrom);
    }

    private DeviceApproved Approved(DeviceEntry device, DateTimeOffset at)
    {
        if (device.Ipv4.Length > 0) return new DeviceApproved(device.DeviceId, KeyExpiryFor(at, device.Tags));
        var ipv4 = Ipv4At(FreeAddressOffset());
        var name = device.Name.Length > 0 ? device.Name : UniqueName(TailnetRules.DeviceNameFrom(device.Hostname), device.DeviceId);
        return new DeviceApproved(device.DeviceId, KeyExpiryFor(at, device.Tags), ipv4, Ipv6For(ipv4), name);
    }

    private Decision<ITailnetEvent> RenameDecision(DeviceEntry device, string name)
    {
        if (TailnetRules.CheckName(name) is not null)
            return Decision<ITailnetEvent>.Reject(Rejection.Invalid($"device name '{name}' is invalid: use 1-63 characters a-z, 0-9 and '-', starting and ending with a letter or digit"));
        if (name == device.Name) return Decision<ITailnetEvent>.Unchanged;
        if (Devices.Values.Any(d => d.Name == name)) return Decision<ITailnetEvent>.Reject(Rejection.Conflict($"a device named '{name}' already exists"));
        return Decision<ITailnetEvent>.Accept(new DeviceRenamed(device.DeviceId, name));
    }

    private Decision<ITailnetEvent> SetTagsDecision(DeviceEntry device, SetDeviceTags c)
    {
        if (TailnetRules.CheckTags(c.Tags) is { } invalid) return Decision<ITailnetEvent>.Reject(invalid);
        if (CheckTagsDefined(c.Tags) is { } undefined) return Decision<ITailnetEvent>.Reject(undefined);
        var tags = c.Tags.Distinct().Order().ToImmutableArray();
        if (tags.SequenceEqual(device.Tags)) return Decision<ITailnetEvent>.Unchanged;
        // Tagged devices do not expire; removing the last tag starts the tailnet's expiry from now.
        var expiry = tags.IsEmpty ? device.KeyExpiry ?? KeyExpiryFor(c.At, tags) : null;
        var events = new List<ITailnetEvent>(2) { new DeviceTagsChanged(device.DeviceId, tags, expiry) };
        // Its new tags may be what the autoApprovers name for the routes it waits with.
        if (device.IsActive && AutoApproved(device, device.AdvertisedRoutes, Policy.AutoApprovers, PolicyDeviceOf(device with { Tags = tags }).Principal) is { } approved)
            events.Add(approved);
        return Decision<ITailnetEvent>.Accept(events);
    }

    private static Decision<ITailnetEvent> EndpointsDecision(DeviceEntry device, UpdateDeviceEndpoints c)
    {
        if (c.Endpoints.Length > MaxEndpoints) return Decision<ITailnetEvent>.Reject(Rejection.Invalid($"at most {MaxEndpoints} endpoints"));
        foreach (var endpoint in c.Endpoints)
            if (!IPEndPoint.TryParse(endpoint, out var parsed) || parsed.Port == 0) return Decision<ITailnetEvent>.Reject(Rejection.Invalid($"endpoint '{endpoint}' is not IP:port"));
        // A report older than the one held arrived late (resent, or buffered across a failover).
        if (c.Version != device.EndpointsVersion && !NetMapRules.EndpointsNewer(c.Version, device.EndpointsVersion)) return Decision<ITailnetEvent>.Unchanged;
        if (!device.EndpointsUnknown && c.Endpoints.SequenceEqual(device.Endpoints) && c.HomeRelay == device.HomeRelay && c.DiscoKey == device.DiscoKey)
            return Decision<ITailnetEvent>.Unchanged;
        return Decision<ITailnetEvent>.Accept(new DeviceEndpointsChanged(device.DeviceId, c.Endpoints, c.HomeRelay, c.DiscoKey));
    }

    /// <summary>
    /// The agent's routes replace the advertised ones. As in Tailscale, the policy's autoApprovers are
    /// asked when a route is advertised: what they cover is approved then, and stays approved.
    /// </summary>
    private Decision<ITailnetEvent> AdvertiseRoutesDecision(DeviceEntry device, AdvertiseDeviceRoutes c)
    {
        if (DeviceRoutes.Check(c.Routes, out var routes) is { } invalid) return Decision<ITailnetEvent>.Reject(invalid);
        if (routes.SequenceEqual(device.AdvertisedRoutes)) return Decision<ITailnetEvent>.Unchanged;
        var events = new List<ITailnetEvent>(2) { new DeviceRoutesAdvertised(device.DeviceId, routes) };
        if (AutoApproved(device, routes, Policy.AutoApprovers, PolicyDeviceOf(device).Principal) is { } approved) events.Add(approved);
        return Decision<ITailnetEvent>.Accept(events);
    }

    /// <summary>
    /// The approval of <paramref name="advertised"/> routes not approved yet that <paramref name="approvers"/> cover
    /// for the device (as <paramref name="principal"/>: its user or tags); null when they cover none. Asked when
    /// routes are advertised, when the policy changes, and when the device's tags do.
    /// </summary>
    private static DeviceRoutesApproved? AutoApproved(DeviceEntry device, ImmutableArray<string> advertised, AutoApprovers approvers, Principal principal)
    {
        var approved = advertised.Where(r => !device.ApprovedRoutes.Contains(r) && !DeviceRoutes.IsExit(r) && approvers.ApprovesRoute(IPNetwork.Parse(r), principal)).ToList();
        if (advertised.Any(DeviceRoutes.IsExit) && !DeviceRoutes.ExitRoutes.All(device.ApprovedRoutes.Contains) && approvers.ApprovesExitNode(principal))
            approved.AddRange(DeviceRoutes.ExitRoutes);
        return approved.Count > 0 ? new DeviceRoutesApproved(device.DeviceId, [.. device.ApprovedRoutes.Union(approved).Order(StringComparer.Ordinal)]) : null;
    }

    private static Decision<ITailnetEvent> ApproveRoutesDecision(DeviceEntry device, ApproveDeviceRoutes c)
    {
        if (DeviceRoutes.Check(c.Routes, out var routes) is { } invalid) return Decision<ITailnetEvent>.Reject(invalid);
        if (routes.FirstOrDefault(r => !device.AdvertisedRoutes.Contains(r)) is { } unknown)
            return Decision<ITailnetEvent>.Reject(Rejection.Invalid(
                $"device {device.DeviceId} does not advertise {unknown}; it advertises {(device.AdvertisedRoutes.IsEmpty ? "no routes" : string.Join(", ", device.AdvertisedRoutes))}"));
        if (routes.SequenceEqual(device.ApprovedRoutes)) return Decision<ITailnetEvent>.Unchanged;
        return Decision<ITailnetEvent>.Accept(new DeviceRoutesApproved(device.DeviceId, routes));
    }

    private Decision<ITailnetEvent> RotateDecision(DeviceEntry device, RotateDeviceNodeKey c)
    {
        // Already applied: the agent asks again (its answer was lost, or it asked twice) and hears what it heard the first time.
        if (device.NodeKey == c.NewNodeKey && device.IsActive) return Decision<ITailnetEvent>.Unchanged;
        if (device.NodeKey != c.OldNodeKey)
            return Decision<ITailnetEvent>.Reject(new Rejection(ControlErrorCodes.NodeKeyProofInvalid, "the old node key is not this device's current key"));
        // A key that lapsed is expired whether or not the sweep has marked it yet: rotating would escape the re-authentication.
        if (!device.IsActive || device.KeyLapsedBy(c.At))
            return Decision<ITailnetEvent>.Reject(new Rejection(device.Status == DeviceStatus.Pending ? ControlErrorCodes.PendingApproval : ControlErrorCodes.DeviceExpired,
                "only an active device whose key has not expired rotates its key"));
        if (Devices.Values.Any(d => d.NodeKey == c.NewNodeKey))
            return Decision<ITailnetEvent>.Reject(new Rejection(ControlErrorCodes.NodeKeyInUse, "another device already uses this node key"));
        return Decision<ITailnetEvent>.Accept(new DeviceNodeKeyRotated(device.DeviceId, c.NewNodeKey, KeyExpiryFor(c.At, device.Tags)));
    }

    /// <summary>
    /// What a registration needs to know about the tailnet's other devices, learned in one pass over them:
    /// the device of its machine key, whether another machine's device has its node key, and whether the
    /// name it would get (its host name's) and the next address in line are taken. A tailnet of thousands
    /// is slow to walk (tens of nanoseconds a device), and a join storm walks it once per join.
    /// </summary>
    private readonly record struct RegistrationScan(DeviceEntry? SameMachine, bool NodeKeyElsewhere, bool NameTaken, bool NextAddressTaken);

    private RegistrationScan ScanFor(RegisterDevice c)
    {
        var wantedName = TailnetRules.DeviceNameFrom(c.Hostname);
        var nextAddress = Ipv4At(NextAddressOffset);
        DeviceEntry? sameMachine = null;
        bool nodeKeyElsewhere = false, nameTaken = false, nextAddressTaken = false;
        foreach (var (_, device) in Devices)
        {
            if (device.MachineKey == c.MachineKey) sameMachine ??= device;
            else if (device.NodeKey == c.NodeKey) nodeKeyElsewhere = true;
            if (device.Name == wantedName && device.DeviceId != c.NewDeviceId) nameTaken = true;
            if (device.Ipv4 == nextAddress) nextAddressTaken = true;
        }
        return new RegistrationScan(sameMachine, nodeKeyElsewhere, nameTaken, nextAddressTaken);
    }

    /// <param name="wantedTaken">Whether another device has <paramref name="wanted"/>, if already known.</param>
    private string UniqueName(string wanted, string deviceId, bool? wantedTaken = null)
    {
        // The usual case, a name no other device has, costs at most one pass and builds nothing.
        if (!(wantedTaken ?? Devices.Values.Any(d => d.Name == wanted && d.DeviceId != deviceId))) return wanted;
        var taken = Devices.Values.Where(d => d.DeviceId != deviceId).Select(d => d.Name).ToHashSet();
        for (var n = 2; ; n++)
        {
            var suffix = "-" + n;
            var candidate = (wanted.Length + suffix.Length > 63 ? wanted[..(63 - suffix.Length)] : wanted) + suffix;
            if (!taken.Contains(candidate)) return candidate;
        }
    }

    /// <summary>The next unused IPv4 offset at or after <see cref="NextAddressOffset"/>, skipping .0 and .255.</summary>
    /// <param name="nextTaken">Whether a device has the address at <see cref="NextAddressOffset"/>, if already known.</param>
    private int FreeAddressOffset(bool? nextTaken = null)
    {
        var offset = NextAddressOffset;
        // The usual case, the next address in line is free, costs at most one pass and builds nothing (addresses
        // are stored as Ipv4At writes them, so comparing the text is comparing the address).
        if ((offset & 0xff) is not (0 or 255) && !(nextTaken ?? AddressTaken(Ipv4At(offset)))) return offset;
        var used = Devices.Values.Where(d => d.Ipv4.Length > 0).Select(d => OffsetOf(d.Ipv4)).ToHashSet();
        for (var tries = 0; tries < Ipv4PoolSize; tries++, offset = offset % (Ipv4PoolSize - 1) + 1)
        {
            if ((offset & 0xff) is 0 or 255 || used.Contains(offset)) continue;
            return offset;
        }
        throw new InvalidOperationException("the tailnet's address pool is exhausted");
    }

    private bool AddressTaken(string ipv4) => Devices.Values.Any(d => d.Ipv4 == ipv4);

    public static string Ipv4At(int offset)
    {
        var value = (100u << 24) | (64u << 16) | (uint)offset;
        return new IPAddress(new[] { (byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value }).ToString();
    }

    public static int OffsetOf(string ipv4)
    {
        var bytes = IPAddress.Parse(ipv4).GetAddressBytes();
        return (int)((((uint)bytes[0] << 24) | ((uint)bytes[1] << 16) | ((uint)bytes[2] << 8) | bytes[3]) - ((100u << 24) | (64u << 16)));
    }

    /// <summary>fd7a:115c:a1e0::/48 with the IPv4 address in the low 32 bits: unique within the tailnet whenever the IPv4 is.</summary>
    public static string Ipv6For(string ipv4)
    {
        var v4 = IPAddress.Parse(ipv4).GetAddressBytes();
        var v6 = IPAddress.Parse(Ipv6Prefix).GetAddressBytes();
        v4.CopyTo(v6, 12);
        return new IPAddress(v6).ToString();
    }
}
