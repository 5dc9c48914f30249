namespace Weft.Cluster.Persistence;

/// <summary>How the event-sourced entities write. Bound from <c>Weft:Persistence</c>.</summary>
public sealed class PersistenceSettings
{
    /// <summary>
    /// The most commands one entity folds into a single journal write (group commit). One write per
    /// command costs a database round trip each (a few hundred events/s); batching is what reaches
    /// thousands. 1 turns batching off, which the journal benchmark uses as its baseline.
    /// </summary>
    public int MaxCommandsPerWrite { get; set; } = 512;

    /// <summary>Snapshot an entity after this many events, so that recovery replays few events; 0: never (recovery replays everything).</summary>
    public int SnapshotEveryEvents { get; set; } = 200;

    /// <summary>
    /// Keep every event for good. By default an entity that stores a snapshot deletes its events up to the
    /// snapshot before it (which it keeps too), so the database grows with what the cluster holds, not with
    /// how long it has run. Keeping them all keeps each entity's full history, and the journal then grows
    /// with every change, down to a last-seen time per agent disconnect.
    /// </summary>
    public bool KeepAllEvents { get; set; }

    public IEnumerable<string> Problems(string prefix)
    {
        if (MaxCommandsPerWrite < 1) yield return $"{prefix}:MaxCommandsPerWrite must be at least 1, not {MaxCommandsPerWrite}";
        if (SnapshotEveryEvents < 0) yield return $"{prefix}:SnapshotEveryEvents must be 0 (never) or more, not {SnapshotEveryEvents}";
    }
}
