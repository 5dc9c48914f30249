namespace Weft.Cluster.Persistence;

/// <summary>
/// Marks everything that is written to the journal or the snapshot store: events and state snapshots.
/// These are bound to <see cref="StoredRecordSerializer"/> (protobuf, stable short manifests), so a
/// renamed C# type never breaks stored history.
/// </summary>
public interface IStoredRecord;
