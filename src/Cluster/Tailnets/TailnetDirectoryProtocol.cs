using Akka.Actor;
using Weft.Cluster.Messaging;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tailnets;

// The directory's protocol. The directory is one entity that owns every tailnet's name (unique
// across the cluster) and lifecycle, and drives the TailnetActor through creation and removal.

/// <summary>Everything addressed to the directory; sharding sends it all to the one directory entity.</summary>
public interface ITailnetDirectoryMessage : IClusterMessage;

public interface ITailnetDirectoryEvent : IStoredRecord;

// Commands from the API

/// <summary>Reserves the name, creates the tailnet entity, and replies <see cref="TailnetRegistered"/> once both are stored.</summary>
[WireName("directory.register")]
public sealed record RegisterTailnet(string TailnetId, string Name, TailnetSettings Settings, DateTimeOffset At) : ITailnetDirectoryMessage;

[WireName("directory.rename")]
public sealed record RenameTailnet(string TailnetId, string NewName) : ITailnetDirectoryMessage;

/// <summary>Hides the tailnet at once, deletes the entity, then frees the name; replies <see cref="TailnetRemoved"/>.</summary>
[WireName("directory.remove")]
public sealed record RemoveTailnet(string TailnetId, DateTimeOffset At) : ITailnetDirectoryMessage;

// Commands the directory sends itself when the tailnet entity has answered (never cross nodes)

public sealed record FinishRegistration(string TailnetId, TailnetInfo Info);

public sealed record FinishRemoval(string TailnetId);

/// <summary>
/// The tailnet entity refused to be created, for good (it was deleted: a creation sent again with the
/// Idempotency-Key that created it names the same id). The reserved name is freed and the creator gets
/// <paramref name="Reason"/>, instead of a registration retried in the background for ever.
/// </summary>
public sealed record AbandonRegistration(string TailnetId, Rejection Reason);

// Queries and replies

[WireName("directory.list")]
public sealed record ListTailnets : ITailnetDirectoryMessage;

/// <summary>Finds an active tailnet by id (<c>tn_…</c>) or by name.</summary>
[WireName("directory.find")]
public sealed record FindTailnet(string IdOrName) : ITailnetDirectoryMessage;

[WireName("directory.entry")]
public sealed record TailnetEntry(string TailnetId, string Name, DateTimeOffset CreatedAt) : IClusterMessage;

[WireName("directory.listing")]
public sealed record TailnetListing(IReadOnlyList<TailnetEntry> Tailnets) : IClusterMessage;

[WireName("directory.registered")]
public sealed record TailnetRegistered(TailnetEntry Entry, TailnetInfo Info) : IClusterMessage;

[WireName("directory.removed")]
public sealed record TailnetRemoved(string TailnetId) : IClusterMessage;

// Events

public sealed record TailnetRegistrationStarted(string TailnetId, string Name, TailnetSettings Settings, DateTimeOffset At) : ITailnetDirectoryEvent;

public sealed record TailnetRegistrationCompleted(string TailnetId) : ITailnetDirectoryEvent;

public sealed record TailnetRenamed(string TailnetId, string Name) : ITailnetDirectoryEvent;

public sealed record TailnetRemovalStarted(string TailnetId, DateTimeOffset At) : ITailnetDirectoryEvent;

public sealed record TailnetRemovalCompleted(string TailnetId) : ITailnetDirectoryEvent;

/// <summary>The directory's answer from a tailnet entity, piped back to itself.</summary>
internal sealed record TailnetEntityAnswered(ITailnetCommand Command, object Answer, IActorRef ReplyTo);

/// <summary>The API-key registry's answer to revoking a deleted tailnet's keys.</summary>
internal sealed record TailnetKeysRevoked(DeleteTailnet Removal, object Answer, IActorRef ReplyTo);
