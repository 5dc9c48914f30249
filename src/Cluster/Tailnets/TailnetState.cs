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
/// writer that keeps names unique across all tenants.
/// </summary>
public sealed record TailnetState(
    string TailnetId,
    TailnetLifecycle Lifecycle,
    TailnetSettings Settings,
    DateTimeOffset CreatedAt) : IStoredRecord
{
    public static TailnetState Unborn(string tailnetId) =>
        new(tailnetId, TailnetLifecycle.Unborn, TailnetRules.DefaultSettings("unborn"), DateTimeOffset.UnixEpoch);

    public bool IsActive => Lifecycle == TailnetLifecycle.Active;

    public Decision<ITailnetEvent> Process(ITailnetCommand command) => command switch
    {
        CreateTailnet create => Create(create),
        ChangeTailnetSettings change => ChangeSettings(change),
        DeleteTailnet delete => Delete(delete),
        _ => throw new ArgumentOutOfRangeException(nameof(command), command.GetType().Name, "not a tailnet command"),
    };

    public TailnetState Apply(ITailnetEvent @event) => @event switch
    {
        TailnetCreated created => this with { Lifecycle = TailnetLifecycle.Active, Settings = created.Settings, CreatedAt = created.At },
        NodeKeyExpiryChanged changed => this with { Settings = Settings with { NodeKeyExpiryDays = changed.Days } },
        DnsSuffixChanged changed => this with { Settings = Settings with { DnsSuffix = changed.DnsSuffix } },
        TailnetDeleted => this with { Lifecycle = TailnetLifecycle.Deleted },
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not a tailnet event"),
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
                return Decision<ITailnetEvent>.Reject(Rejection.Conflict($"tailnet {TailnetId} was deleted and cannot be created again"));
        }
        if (TailnetRules.CheckSettings(create.Settings) is { } invalid) return Decision<ITailnetEvent>.Reject(invalid);
        return Decision<ITailnetEvent>.Accept(new TailnetCreated(create.Settings, create.At));
    }

    private Decision<ITailnetEvent> ChangeSettings(ChangeTailnetSettings change)
    {
        if (!IsActive) return Decision<ITailnetEvent>.Reject(NotFound());
        if (change.NodeKeyExpiryDays is null && change.DnsSuffix is null)
            return Decision<ITailnetEvent>.Reject(Rejection.Invalid("no setting to change: give nodeKeyExpiryDays and/or dnsSuffix"));

        var events = new List<ITailnetEvent>(2);
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
        return Decision<ITailnetEvent>.Accept(events);
    }

    private Decision<ITailnetEvent> Delete(DeleteTailnet delete) =>
        IsActive ? Decision<ITailnetEvent>.Accept(new TailnetDeleted(delete.At)) : Decision<ITailnetEvent>.Unchanged;
}
