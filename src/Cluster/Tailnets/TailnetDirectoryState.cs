using System.Collections.Immutable;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tailnets;

public enum DirectoryPhase
{
    /// <summary>Name reserved, entity not yet confirmed created. Invisible to the API.</summary>
    Creating = 0,
    Active = 1,
    /// <summary>Hidden from the API; the name stays reserved until the entity confirms deletion.</summary>
    Removing = 2,
}

public sealed record DirectoryEntry(
    string TailnetId,
    string Name,
    DateTimeOffset CreatedAt,
    DirectoryPhase Phase,
    TailnetSettings InitialSettings,
    DateTimeOffset? RemovalRequestedAt = null)
{
    public TailnetEntry ToEntry() => new(TailnetId, Name, CreatedAt);
}

/// <summary>The catalogue of tailnets: ids, unique names and lifecycle phases.</summary>
public sealed record TailnetDirectoryState(ImmutableSortedDictionary<string, DirectoryEntry> Entries) : IStoredRecord
{
    public static readonly TailnetDirectoryState Empty = new(ImmutableSortedDictionary<string, DirectoryEntry>.Empty);

    /// <summary>Names of every entry in any phase: a name is free only once its removal is complete.</summary>
    private ImmutableDictionary<string, string> IdsByName { get; init; } = ImmutableDictionary<string, string>.Empty;

    public bool Equals(TailnetDirectoryState? other) => other is not null && Entries.SequenceEqual(other.Entries);

    public override int GetHashCode() => Entries.Count;

    public static TailnetDirectoryState From(IEnumerable<DirectoryEntry> entries) =>
        entries.Aggregate(Empty, (state, entry) => state.Put(entry));

    public IEnumerable<DirectoryEntry> Pending => Entries.Values.Where(e => e.Phase != DirectoryPhase.Active);

    public DirectoryEntry? FindActive(string idOrName)
    {
        var id = Identifiers.LooksLikeTailnetId(idOrName) ? idOrName : IdsByName.GetValueOrDefault(idOrName);
        return id is not null && Entries.TryGetValue(id, out var entry) && entry.Phase == DirectoryPhase.Active ? entry : null;
    }

    public TailnetListing List() =>
        new(Entries.Values.Where(e => e.Phase == DirectoryPhase.Active).OrderBy(e => e.Name, StringComparer.Ordinal).Select(e => e.ToEntry()).ToList());

    public Decision<ITailnetDirectoryEvent> Process(object command) => command switch
    {
        RegisterTailnet register => Register(register),
        FinishRegistration finish => Entries.TryGetValue(finish.TailnetId, out var e) && e.Phase == DirectoryPhase.Creating
            ? Decision<ITailnetDirectoryEvent>.Accept(new TailnetRegistrationCompleted(finish.TailnetId))
            : Decision<ITailnetDirectoryEvent>.Unchanged,
        // Stored as a completed removal: the same change (the entry and its name go), which every version reads.
        AbandonRegistration abandon => Entries.TryGetValue(abandon.TailnetId, out var e) && e.Phase == DirectoryPhase.Creating
            ? Decision<ITailnetDirectoryEvent>.Accept(new TailnetRemovalCompleted(abandon.TailnetId))
            : Decision<ITailnetDirectoryEvent>.Unchanged,
        RenameTailnet rename => Rename(rename),
        RemoveTailnet remove => FindActive(remove.TailnetId) is null
            ? Decision<ITailnetDirectoryEvent>.Reject(NotFound(remove.TailnetId))
            : Decision<ITailnetDirectoryEvent>.Accept(new TailnetRemovalStarted(remove.TailnetId, remove.At)),
        FinishRemoval finish => Entries.TryGetValue(finish.TailnetId, out var e) && e.Phase == DirectoryPhase.Removing
            ? Decision<ITailnetDirectoryEvent>.Accept(new TailnetRemovalCompleted(finish.TailnetId))
            : Decision<ITailnetDirectoryEvent>.Unchanged,
        _ => throw new ArgumentOutOfRangeException(nameof(command), command.GetType().Name, "not a directory command"),
    };

    public TailnetDirectoryState Apply(ITailnetDirectoryEvent @event) => @event switch
    {
        TailnetRegistrationStarted s => Put(new DirectoryEntry(s.TailnetId, s.Name, s.At, DirectoryPhase.Creating, s.Settings)),
        TailnetRegistrationCompleted c => Put(Entries[c.TailnetId] with { Phase = DirectoryPhase.Active }),
        TailnetRenamed r => Put(Entries[r.TailnetId] with { Name = r.Name }),
        TailnetRemovalStarted s => Put(Entries[s.TailnetId] with { Phase = DirectoryPhase.Removing, RemovalRequestedAt = s.At }),
        TailnetRemovalCompleted c => Remove(c.TailnetId),
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not a directory event"),
    };

    public static Rejection NotFound(string idOrName) => Rejection.NotFound($"tailnet '{idOrName}' does not exist");

    private Decision<ITailnetDirectoryEvent> Register(RegisterTailnet register)
    {
        if (TailnetRules.CheckName(register.Name) is { } badName) return Decision<ITailnetDirectoryEvent>.Reject(badName);
        if (TailnetRules.CheckSettings(register.Settings) is { } badSettings) return Decision<ITailnetDirectoryEvent>.Reject(badSettings);
        if (Entries.TryGetValue(register.TailnetId, out var same))
            // The same request again (a retry, a repeated Idempotency-Key): it completes as the first one does.
            return same.Name == register.Name && same.Phase != DirectoryPhase.Removing
                ? Decision<ITailnetDirectoryEvent>.Unchanged
                : Decision<ITailnetDirectoryEvent>.Reject(TailnetState.IdTaken("tailnet", register.TailnetId));
        if (!Identifiers.LooksLikeTailnetId(register.TailnetId))
            return Decision<ITailnetDirectoryEvent>.Reject(Rejection.Conflict($"tailnet id {register.TailnetId} is not available"));
        if (IdsByName.ContainsKey(register.Name))
            return Decision<ITailnetDirectoryEvent>.Reject(Rejection.Conflict($"a tailnet named '{register.Name}' already exists"));
        return Decision<ITailnetDirectoryEvent>.Accept(new TailnetRegistrationStarted(register.TailnetId, register.Name, register.Settings, register.At));
    }

    private Decision<ITailnetDirectoryEvent> Rename(RenameTailnet rename)
    {
        if (FindActive(rename.TailnetId) is not { } entry) return Decision<ITailnetDirectoryEvent>.Reject(NotFound(rename.TailnetId));
        if (TailnetRules.CheckName(rename.NewName) is { } badName) return Decision<ITailnetDirectoryEvent>.Reject(badName);
        if (entry.Name == rename.NewName) return Decision<ITailnetDirectoryEvent>.Unchanged;
        if (IdsByName.ContainsKey(rename.NewName))
            return Decision<ITailnetDirectoryEvent>.Reject(Rejection.Conflict($"a tailnet named '{rename.NewName}' already exists"));
        return Decision<ITailnetDirectoryEvent>.Accept(new TailnetRenamed(rename.TailnetId, rename.NewName));
    }

    private TailnetDirectoryState Put(DirectoryEntry entry)
    {
        var names = IdsByName;
        if (Entries.TryGetValue(entry.TailnetId, out var previous)) names = names.Remove(previous.Name);
        return new TailnetDirectoryState(Entries.SetItem(entry.TailnetId, entry)) { IdsByName = names.SetItem(entry.Name, entry.TailnetId) };
    }

    private TailnetDirectoryState Remove(string tailnetId) =>
        Entries.TryGetValue(tailnetId, out var entry)
            ? new TailnetDirectoryState(Entries.Remove(tailnetId)) { IdsByName = IdsByName.Remove(entry.Name) }
            : this;
}
