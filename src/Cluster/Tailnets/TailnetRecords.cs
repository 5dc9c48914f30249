using System.Collections.Immutable;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tailnets;

/// <summary>Stored-record manifests and protobuf mappings of the tailnet entity and the directory.</summary>
public static class TailnetRecords
{
    public static RecordCodecs AddTailnetRecords(this RecordCodecs codecs) => codecs
        .Add<TailnetCreated, Stored.TailnetCreated>("tn.created",
            e => new() { Settings = ToStored(e.Settings), At = e.At.ToStored() },
            p => new(FromStored(p.Settings), p.At.ToTime()))
        .Add<NodeKeyExpiryChanged, Stored.NodeKeyExpiryChanged>("tn.key-expiry-changed",
            e => new() { Days = e.Days },
            p => new(p.Days))
        .Add<DnsSuffixChanged, Stored.DnsSuffixChanged>("tn.dns-suffix-changed",
            e => new() { DnsSuffix = e.DnsSuffix },
            p => new(p.DnsSuffix))
        .Add<TailnetDeleted, Stored.TailnetDeleted>("tn.deleted",
            e => new() { At = e.At.ToStored() },
            p => new(p.At.ToTime()))
        .Add<EphemeralTimeoutChanged, Stored.EphemeralTimeoutChanged>("tn.ephemeral-timeout-changed",
            e => new() { Seconds = e.Seconds },
            p => new(p.Seconds))
        .Add<KeylessRegistrationChanged, Stored.KeylessRegistrationChanged>("tn.keyless-registration-changed",
            e => new() { Allowed = e.Allowed },
            p => new(p.Allowed))
        .Add<TailnetState, Stored.TailnetSnapshot>("tn.snapshot",
            s => new Stored.TailnetSnapshot()
            {
                TailnetId = s.TailnetId, Lifecycle = (int)s.Lifecycle, Settings = ToStored(s.Settings), CreatedAt = s.CreatedAt.ToStored(),
                Users = { s.Users.Values.Select(ToStored) }, AuthKeys = { s.AuthKeys.Values.Select(ToStored) },
                Devices = { s.Devices.Values.Select(ToStored) }, NextAddressOffset = s.NextAddressOffset,
                PolicyVersion = s.PolicyVersion, PolicyUpdatedAt = s.PolicyUpdatedAt?.ToStored(),
                Sso = s.Sso is null ? null : ToStored(s.Sso),
                Logins = { s.Logins.Values.Select(ToStored) },
                DeletedUserIds = { s.DeletedUserIds },
                ForgottenAuthKeyIds = { s.ForgottenAuthKeyIds },
            }.WithPolicyText(s.PolicyText),
            p => new TailnetState(p.TailnetId, (TailnetLifecycle)p.Lifecycle, FromStored(p.Settings), p.CreatedAt.ToTime())
            {
                Users = p.Users.Select(FromStored).ToImmutableSortedDictionary(u => u.UserId, u => u),
                AuthKeys = p.AuthKeys.Select(FromStored).ToImmutableSortedDictionary(k => k.KeyId, k => k),
                Devices = p.Devices.Select(FromStored).ToImmutableSortedDictionary(d => d.DeviceId, d => d),
                NextAddressOffset = p.NextAddressOffset == 0 ? 1 : p.NextAddressOffset,
                PolicyText = p.HasPolicyText ? p.PolicyText : null,
                PolicyVersion = p.PolicyVersion == 0 ? 1 : p.PolicyVersion,
                PolicyUpdatedAt = p.PolicyUpdatedAt?.ToTime(),
                Sso = p.Sso is null ? null : FromStored(p.Sso),
                Logins = p.Logins.Select(FromStored).ToImmutableSortedDictionary(l => l.LoginId, l => l),
                DeletedUserIds = p.DeletedUserIds.ToImmutableSortedSet(StringComparer.Ordinal),
                ForgottenAuthKeyIds = p.ForgottenAuthKeyIds.ToImmutableSortedSet(StringComparer.Ordinal),
            })
        .Add<SsoConfigured, Stored.SsoConfigured>("tn.sso-configured", e => new() { Settings = ToStored(e.Settings) }, p => new(FromStored(p.Settings)))
        .Add<SsoRemoved, Stored.SsoRemoved>("tn.sso-removed", _ => new(), _ => new())
        .Add<DeviceLoginStarted, Stored.DeviceLoginStarted>("tn.device-login-started", e => new() { Login = ToStored(e.Login) }, p => new(FromStored(p.Login)))
        .Add<DeviceLoginCompleted, Stored.DeviceLoginCompleted>("tn.device-login-completed",
            e => new() { LoginId = e.LoginId, UserId = e.UserId },
            p => new(p.LoginId, p.UserId))
        .Add<UserSignedIn, Stored.UserSignedIn>("tn.user-signed-in", e => new() { User = ToStored(e.User) }, p => new(FromStored(p.User)))
        .Add<PolicyChanged, Stored.PolicyChanged>("tn.policy-changed",
            e => new() { Text = e.Text, Version = e.Version, At = e.At.ToStored() },
            p => new(p.Text, p.Version, p.At.ToTime()))
        .Add<UserCreated, Stored.UserCreated>("tn.user-created", e => new() { User = ToStored(e.User) }, p => new(FromStored(p.User)))
        .Add<UserDeleted, Stored.UserDeleted>("tn.user-deleted", e => new() { UserId = e.UserId }, p => new(p.UserId))
        .Add<UserRoleChanged, Stored.UserRoleChanged>("tn.user-role-changed", e => new() { UserId = e.UserId, Role = (int)e.Role }, p => new(p.UserId, (UserRole)p.Role))
        .Add<AuthKeyCreated, Stored.AuthKeyCreated>("tn.auth-key-created", e => new() { Key = ToStored(e.Key) }, p => new(FromStored(p.Key)))
        .Add<AuthKeyRevoked, Stored.AuthKeyRevoked>("tn.auth-key-revoked", e => new() { KeyId = e.KeyId }, p => new(p.KeyId))
        .Add<AuthKeyUsed, Stored.AuthKeyUsed>("tn.auth-key-used", e => new() { KeyId = e.KeyId }, p => new(p.KeyId))
        .Add<AuthKeysForgotten, Stored.AuthKeysForgotten>("tn.auth-keys-forgotten", e => new() { KeyIds = { e.KeyIds } }, p => new([.. p.KeyIds]))
        .Add<DeviceRegistered, Stored.DeviceRegistered>("tn.device-registered", e => new() { Device = ToStored(e.Device) }, p => new(FromStored(p.Device)))
        .Add<DeviceReauthorized, Stored.DeviceReauthorized>("tn.device-reauthorized",
            e =>
            {
                var stored = new Stored.DeviceReauthorized { DeviceId = e.DeviceId, NodeKey = e.NodeKey, DiscoKey = e.DiscoKey, KeyExpiry = e.KeyExpiry.ToStored(), Tags = { e.Tags } };
                if (e.UserId is not null) stored.UserId = e.UserId;
                if (e.AuthKeyId is not null) stored.AuthKeyId = e.AuthKeyId;
                return stored;
            },
            p => new(p.DeviceId, p.NodeKey, p.DiscoKey, p.KeyExpiry.ToOptionalTime(), p.HasUserId ? p.UserId : null, [.. p.Tags], p.HasAuthKeyId ? p.AuthKeyId : null))
        .Add<DeviceApproved, Stored.DeviceApproved>("tn.device-approved",
            e => new() { DeviceId = e.DeviceId, KeyExpiry = e.KeyExpiry.ToStored(), Ipv4 = e.Ipv4, Ipv6 = e.Ipv6, Name = e.Name },
            p => new(p.DeviceId, p.KeyExpiry.ToOptionalTime(), p.Ipv4, p.Ipv6, p.Name))
        .Add<DeviceRenamed, Stored.DeviceRenamed>("tn.device-renamed", e => new() { DeviceId = e.DeviceId, Name = e.Name }, p => new(p.DeviceId, p.Name))
        .Add<DeviceTagsChanged, Stored.DeviceTagsChanged>("tn.device-tags-changed",
            e => new() { DeviceId = e.DeviceId, Tags = { e.Tags }, KeyExpiry = e.KeyExpiry.ToStored() },
            p => new(p.DeviceId, [.. p.Tags], p.KeyExpiry.ToOptionalTime()))
        .Add<DeviceExpired, Stored.DeviceExpired>("tn.device-expired", e => new() { DeviceId = e.DeviceId, At = e.At.ToStored() }, p => new(p.DeviceId, p.At.ToTime()))
        .Add<DeviceDeleted, Stored.DeviceDeleted>("tn.device-deleted", e => new() { DeviceId = e.DeviceId }, p => new(p.DeviceId))
        .Add<DeviceEndpointsChanged, Stored.DeviceEndpointsChanged>("tn.device-endpoints",
            e => new() { DeviceId = e.DeviceId, Endpoints = { e.Endpoints }, HomeRelay = e.HomeRelay, DiscoKey = e.DiscoKey },
            p => new(p.DeviceId, [.. p.Endpoints], p.HomeRelay, p.DiscoKey))
        .Add<DeviceNodeKeyRotated, Stored.DeviceNodeKeyRotated>("tn.device-key-rotated",
            e => new() { DeviceId = e.DeviceId, NodeKey = e.NodeKey, KeyExpiry = e.KeyExpiry.ToStored() },
            p => new(p.DeviceId, p.NodeKey, p.KeyExpiry.ToOptionalTime()))
        .Add<DeviceLastSeen, Stored.DeviceLastSeen>("tn.device-seen", e => new() { DeviceId = e.DeviceId, At = e.At.ToStored() }, p => new(p.DeviceId, p.At.ToTime()))
        .Add<DeviceHostinfoChanged, Stored.DeviceHostinfoChanged>("tn.device-hostinfo",
            e => new() { DeviceId = e.DeviceId, Hostname = e.Hostname, Os = e.Os, AgentVersion = e.AgentVersion },
            p => new(p.DeviceId, p.Hostname, p.Os, p.AgentVersion))
        .Add<DeviceRoutesAdvertised, Stored.DeviceRoutesAdvertised>("tn.device-routes-advertised",
            e => new() { DeviceId = e.DeviceId, Routes = { e.Routes } },
            p => new(p.DeviceId, [.. p.Routes]))
        .Add<DeviceRoutesApproved, Stored.DeviceRoutesApproved>("tn.device-routes-approved",
            e => new() { DeviceId = e.DeviceId, Routes = { e.Routes } },
            p => new(p.DeviceId, [.. p.Routes]));

    private static Stored.User ToStored(TailnetUser user) => new()
    {
        UserId = user.UserId, Name = user.Name, CreatedAt = user.CreatedAt.ToStored(), Issuer = user.Issuer, Subject = user.Subject,
        Groups = { user.Groups }, LastSignIn = user.LastSignIn.ToStored(), Role = (int)user.Role,
    };

    private static TailnetUser FromStored(Stored.User user) => new(user.UserId, user.Name, user.CreatedAt.ToTime())
    {
        Issuer = user.Issuer, Subject = user.Subject, Groups = [.. user.Groups], LastSignIn = user.LastSignIn.ToOptionalTime(), Role = (UserRole)user.Role,
    };

    private static Stored.DeviceLogin ToStored(DeviceLogin login)
    {
        var stored = new Stored.DeviceLogin
        {
            LoginId = login.LoginId, DeviceId = login.DeviceId, NodeKey = login.NodeKey, DiscoKey = login.DiscoKey,
            CreatedAt = login.CreatedAt.ToStored(), ExpiresAt = login.ExpiresAt.ToStored(),
        };
        if (login.UsedBy is not null) stored.UsedBy = login.UsedBy;
        return stored;
    }

    private static DeviceLogin FromStored(Stored.DeviceLogin login) =>
        new(login.LoginId, login.DeviceId, login.NodeKey, login.DiscoKey, login.CreatedAt.ToTime(), login.ExpiresAt.ToTime(), login.HasUsedBy ? login.UsedBy : null);

    private static Stored.AuthKey ToStored(AuthKey key)
    {
        var stored = new Stored.AuthKey
        {
            KeyId = key.KeyId, SecretHash = key.SecretHash, Reusable = key.Reusable, Ephemeral = key.Ephemeral, Tags = { key.Tags },
            CreatedAt = key.CreatedAt.ToStored(), ExpiresAt = key.ExpiresAt.ToStored(), Description = key.Description, Revoked = key.Revoked, Uses = key.Uses,
        };
        if (key.UserId is not null) stored.UserId = key.UserId;
        return stored;
    }

    private static AuthKey FromStored(Stored.AuthKey key) => new(
        key.KeyId, key.SecretHash, key.HasUserId ? key.UserId : null, key.Reusable, key.Ephemeral, [.. key.Tags],
        key.CreatedAt.ToTime(), key.ExpiresAt.ToTime(), key.Description, key.Revoked, key.Uses);

    private static Stored.Device ToStored(DeviceEntry d)
    {
        var stored = new Stored.Device
        {
            DeviceId = d.DeviceId, MachineKey = d.MachineKey, NodeKey = d.NodeKey, DiscoKey = d.DiscoKey, Name = d.Name, Hostname = d.Hostname, Os = d.Os,
            Tags = { d.Tags }, Ipv4 = d.Ipv4, Ipv6 = d.Ipv6, Endpoints = { d.Endpoints }, HomeRelay = d.HomeRelay, KeyExpiry = d.KeyExpiry.ToStored(),
            Ephemeral = d.Ephemeral, Status = (int)d.Status, CreatedAt = d.CreatedAt.ToStored(), LastSeen = d.LastSeen.ToStored(),
            AgentVersion = d.AgentVersion, RegisteredFrom = d.RegisteredFrom, AdvertisedRoutes = { d.AdvertisedRoutes }, ApprovedRoutes = { d.ApprovedRoutes },
        };
        if (d.UserId is not null) stored.UserId = d.UserId;
        if (d.AuthKeyId is not null) stored.AuthKeyId = d.AuthKeyId;
        return stored;
    }

    private static DeviceEntry FromStored(Stored.Device d) => new(
        d.DeviceId, d.MachineKey, d.NodeKey, d.DiscoKey, d.Name, d.Hostname, d.Os, d.HasUserId ? d.UserId : null, [.. d.Tags], d.Ipv4, d.Ipv6,
        [.. d.Endpoints], d.HomeRelay, d.KeyExpiry.ToOptionalTime(), d.Ephemeral, (DeviceStatus)d.Status, d.CreatedAt.ToTime(),
        d.LastSeen.ToOptionalTime(), d.HasAuthKeyId ? d.AuthKeyId : null, d.AgentVersion, d.RegisteredFrom, [.. d.AdvertisedRoutes], [.. d.ApprovedRoutes]);

    public static RecordCodecs AddTailnetDirectoryRecords(this RecordCodecs codecs) => codecs
        .Add<TailnetRegistrationStarted, Stored.TailnetRegistrationStarted>("dir.registration-started",
            e => new() { TailnetId = e.TailnetId, Name = e.Name, Settings = ToStored(e.Settings), At = e.At.ToStored() },
            p => new(p.TailnetId, p.Name, FromStored(p.Settings), p.At.ToTime()))
        .Add<TailnetRegistrationCompleted, Stored.TailnetRegistrationCompleted>("dir.registration-completed",
            e => new() { TailnetId = e.TailnetId },
            p => new(p.TailnetId))
        .Add<TailnetRenamed, Stored.TailnetRenamed>("dir.renamed",
            e => new() { TailnetId = e.TailnetId, Name = e.Name },
            p => new(p.TailnetId, p.Name))
        .Add<TailnetRemovalStarted, Stored.TailnetRemovalStarted>("dir.removal-started",
            e => new() { TailnetId = e.TailnetId, At = e.At.ToStored() },
            p => new(p.TailnetId, p.At.ToTime()))
        .Add<TailnetRemovalCompleted, Stored.TailnetRemovalCompleted>("dir.removal-completed",
            e => new() { TailnetId = e.TailnetId },
            p => new(p.TailnetId))
        .Add<TailnetDirectoryState, Stored.TailnetDirectorySnapshot>("dir.snapshot",
            s => new() { Entries = { s.Entries.Values.Select(ToStored) } },
            p => TailnetDirectoryState.From(p.Entries.Select(FromStored)));

    private static Stored.TailnetSettings ToStored(TailnetSettings settings) =>
        new() { NodeKeyExpiryDays = settings.NodeKeyExpiryDays, DnsSuffix = settings.DnsSuffix, EphemeralTimeoutSeconds = settings.EphemeralTimeoutSeconds, KeylessRegistration = settings.KeylessRegistration };

    private static TailnetSettings FromStored(Stored.TailnetSettings? stored) =>
        stored is null ? TailnetRules.DefaultSettings("unknown") : new(stored.NodeKeyExpiryDays, stored.DnsSuffix, stored.EphemeralTimeoutSeconds, stored.KeylessRegistration);

    private static Stored.DirectoryEntry ToStored(DirectoryEntry entry) => new()
    {
        TailnetId = entry.TailnetId,
        Name = entry.Name,
        CreatedAt = entry.CreatedAt.ToStored(),
        Phase = (int)entry.Phase,
        InitialSettings = ToStored(entry.InitialSettings),
        RemovalRequestedAt = entry.RemovalRequestedAt.ToStored(),
    };

    private static DirectoryEntry FromStored(Stored.DirectoryEntry stored) => new(
        stored.TailnetId, stored.Name, stored.CreatedAt.ToTime(), (DirectoryPhase)stored.Phase,
        FromStored(stored.InitialSettings), stored.RemovalRequestedAt.ToOptionalTime());

    private static Stored.SsoSettings ToStored(SsoSettings sso) => new()
    {
        Issuer = sso.Issuer, ClientId = sso.ClientId, ClientSecret = sso.ClientSecret, AllowedDomains = { sso.AllowedDomains }, AllowedGroups = { sso.AllowedGroups },
        GroupsClaim = sso.GroupsClaim, Scopes = { sso.Scopes },
    };

    private static SsoSettings FromStored(Stored.SsoSettings stored) =>
        new(stored.Issuer, stored.ClientId, stored.ClientSecret, [.. stored.AllowedDomains], [.. stored.AllowedGroups], stored.GroupsClaim, [.. stored.Scopes]);

    private static Stored.TailnetSnapshot WithPolicyText(this Stored.TailnetSnapshot snapshot, string? text)
    {
        if (text is not null) snapshot.PolicyText = text;
        return snapshot;
    }
}
