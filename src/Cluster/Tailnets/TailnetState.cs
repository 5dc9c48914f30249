using System.Collections.Immutable;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tailnets;

public enum TailnetLifecycle
{
    /// <summary>No event yet: the entity exists only because a message reached it.</summary>
    Unborn = 0,
    Active = 1,
    Deleted = 2,
}

/// <summary>
/// One tailnet's state and its pure logic: <see cref="Process"/> decides, <see cref="Apply"/> evolves.
/// The tailnet's name lives in the <see cref="TailnetDirectoryState">directory</see>, the single
/// writer that keeps names unique across all tenants. Users, auth keys and the device index are in
/// TailnetState.Members.cs; the identity provider in TailnetState.Sso.cs.
/// </summary>
public sealed partial record TailnetState(
    string TailnetId,
    TailnetLifecycle Lifecycle,
    TailnetSettings Settings,
    DateTimeOffset CreatedAt) : IStoredRecord
{
    public static TailnetState Unborn(string tailnetId) =>
        new(tailnetId, TailnetLifecycle.Unborn, TailnetRules.DefaultSettings("unborn"), DateTimeOffset.UnixEpoch);

    public bool IsActive => Lifecycle == TailnetLifecycle.Active;

    /// <summary>
    /// All a deleted tailnet keeps: its id, that it is deleted, and when it was created. Its users, devices, auth
    /// keys, policy, identity provider and DNS suffix go with it (the entity then deletes its stored history too,
    /// see TailnetActor), so a tenant's deletion erases its data; its audit log stays.
    /// </summary>
    public TailnetState Tombstone() => new(TailnetId, TailnetLifecycle.Deleted, TailnetRules.DefaultSettings("deleted"), CreatedAt);

    public Decision<ITailnetEvent> Process(ITailnetCommand command)
    {
        switch (command)
        {
            case CreateTailnet create:
                return Create(create);
            case DeleteTailnet delete:
                // Repeating a delete (the directory retries until it is confirmed) is harmless.
                return IsActive ? Decision<ITailnetEvent>.Accept(new TailnetDeleted(delete.At)) : Decision<ITailnetEvent>.Unchanged;
        }
        if (!IsActive) return Decision<ITailnetEvent>.Reject(NotFound());
        return command switch
        {
            ChangeTailnetSettings change => ChangeSettings(change),
            SetPolicy policy => SetPolicyDecision(policy),
            SetSso or RemoveSso => SsoDecision(command),
            _ => ProcessMembers(command),
        };
    }

    public TailnetState Apply(ITailnetEvent @event) => @event switch
    {
        TailnetCreated created => this with { Lifecycle = TailnetLifecycle.Active, Settings = created.Settings, CreatedAt = created.At },
        NodeKeyExpiryChanged changed => this with { Settings = Settings with { NodeKeyExpiryDays = changed.Days } },
        DnsSuffixChanged changed => this with { Settings = Settings with { DnsSuffix = changed.DnsSuffix } },
        EphemeralTimeoutChanged changed => this with { Settings = Settings with { EphemeralTimeoutSeconds = changed.Seconds } },
        KeylessRegistrationChanged changed => this with { Settings = Settings with { KeylessRegistration = changed.Allowed } },
        TailnetDeleted => Tombstone(),
        PolicyChanged changed => ApplyPolicy(changed),
        SsoConfigured or SsoRemoved => ApplySso(@event),
        _ => ApplyMembers(@event),
    };

    public TailnetInfo ToInfo() => new(TailnetId, Settings, CreatedAt);

    public Rejection NotFound() => Rejection.NotFound($"tailnet {TailnetId} does not exist");

    private Decision<ITailnetEvent> Create(CreateTailnet create)
    {
        switch (Lifecycle)
        {
            case TailnetLifecycle.Active:
                return Decision<ITailnetEvent>.Unchanged;
            case TailnetLifecycle.Deleted:
                return Decision<ITailnetEvent>.Reject(Rejection.Conflict($"tailnet {TailnetId} was deleted and cannot be created again (a creation sent again with the Idempotency-Key that created it names it; use a new key)"));
        }
        if (TailnetRules.CheckSettings(create.Settings) is { } invalid) return Decision<ITailnetEvent>.Reject(invalid);
        return Decision<ITailnetEvent>.Accept(new TailnetCreated(create.Settings, create.At));
    }

    private Decision<ITailnetEvent> ChangeSettings(ChangeTailnetSettings change)
    {
        if (change.NodeKeyExpiryDays is null && change.DnsSuffix is null && change.EphemeralTimeoutSeconds is null && change.KeylessRegistration is null)
            return Decision<ITailnetEvent>.Reject(Rejection.Invalid("no setting to change: give nodeKeyExpiryDays, dnsSuffix, ephemeralTimeoutSeconds and/or keylessRegistration"));

        var events = new List<ITailnetEvent>(3);
        if (change.NodeKeyExpiryDays is { } days)
        {
            if (TailnetRules.CheckNodeKeyExpiryDays(days) is { } invalid) return Decision<ITailnetEvent>.Reject(invalid);
            if (days != Settings.NodeKeyExpiryDays) events.Add(new NodeKeyExpiryChanged(days));
        }
        if (change.DnsSuffix is { } suffix)
        {
            if (TailnetRules.CheckDnsSuffix(suffix) is { } invalid) return Decision<ITailnetEvent>.Reject(invalid);
            if (suffix != Settings.DnsSuffix) events.Add(new DnsSuffixChanged(suffix));
        }
        if (change.EphemeralTimeoutSeconds is { } seconds)
        {
            if (TailnetRules.CheckEphemeralTimeout(seconds) is { } invalid) return Decision<ITailnetEvent>.Reject(invalid);
            if (seconds != Settings.EphemeralTimeoutSeconds) events.Add(new EphemeralTimeoutChanged(seconds));
        }
        if (change.KeylessRegistration is { } keyless && keyless != Settings.KeylessRegistration) events.Add(new KeylessRegistrationChanged(keyless));
        return Decision<ITailnetEvent>.Accept(events);
    }
}
