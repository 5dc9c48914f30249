using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Weft.Cluster.Hosting;
using Weft.Cluster.Messaging;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Audit;

// The audit log: every admin change (who, what, when, from where), one sharded event-sourced log
// per tailnet (keyed by tailnet id, so it outlives renames and its tailnet's deletion, and placed on
// its tailnet's node) and one for
// changes that belong to no tailnet (ClusterLog). The admin API records an entry before it answers
// a change, so a change that was acknowledged has its entry stored.

public interface IAuditMessage : IClusterMessage
{
    /// <summary>A tailnet id, or <see cref="AuditLogs.ClusterLog"/>.</summary>
    string Log { get; }
}

/// <param name="Actor">Who: the API key (id and scope) that made the change.</param>
/// <param name="Action">What: the request's method and path, e.g. <c>POST /api/v1/tailnets/acme/auth-keys</c>.</param>
/// <param name="Target">What it touched, as the path named it (tailnet, device, key...).</param>
/// <param name="Status">The HTTP status the change was answered with.</param>
/// <param name="Source">The client's address.</param>
public sealed record AuditEntry(DateTimeOffset At, string Actor, string Action, string Target, int Status, string Source);

[WireName("audit.record")]
public sealed record RecordAudit(string Log, AuditEntry Entry) : IAuditMessage;

/// <summary>The entries at or after <paramref name="Since"/>, newest last, at most <paramref name="Limit"/> (the newest ones).</summary>
[WireName("audit.get")]
public sealed record GetAuditLog(string Log, DateTimeOffset Since, int Limit) : IAuditMessage;

/// <summary>Which coordinator node hosts the log's entity now (for operators and failover tests).</summary>
[WireName("audit.get-placement")]
public sealed record GetAuditPlacement(string Log) : IAuditMessage;

[WireName("audit.placement")]
public sealed record AuditPlacement(string Log, string Node) : IClusterMessage;

[WireName("audit.recorded-ack")]
public sealed record AuditAppended(string Log, long Total) : IClusterMessage;

/// <param name="Truncated">Older matching entries exist beyond <c>Limit</c> or beyond what the log keeps in memory.</param>
[WireName("audit.page")]
public sealed record AuditPage(string Log, IReadOnlyList<AuditEntry> Entries, bool Truncated) : IClusterMessage;

public sealed record AuditRecorded(AuditEntry Entry) : IStoredRecord;

public static class AuditLogs
{
    public const string ClusterLog = "cluster";

    /// <summary>Entries a log keeps in memory and in its snapshots; older ones stay in the journal only.</summary>
    public const int RetainedEntries = 5_000;

    public const int MaxPage = 1_000;

    /// <summary>Field limits: an entry stays small whatever the request looked like.</summary>
    public const int MaxFieldLength = 256;
}

public sealed record AuditLogState(string Log, ImmutableList<AuditEntry> Entries, long Total) : IStoredRecord
{
    public static AuditLogState Empty(string log) => new(log, [], 0);

    public AuditLogState Apply(AuditRecorded recorded)
    {
        var entries = Entries.Add(recorded.Entry);
        if (entries.Count > AuditLogs.RetainedEntries) entries = entries.RemoveRange(0, entries.Count - AuditLogs.RetainedEntries);
        return this with { Entries = entries, Total = Total + 1 };
    }

    /// <summary>Entries looked back over for one sent again (its first attempt's answer was lost): any retry comes within seconds.</summary>
    private const int RecentlyRecorded = 256;

    /// <summary>Whether <paramref name="entry"/> is among the latest ones (the same time to the tick, the same who, what and where).</summary>
    public bool HoldsRecent(AuditEntry entry)
    {
        for (var i = Entries.Count - 1; i >= Math.Max(0, Entries.Count - RecentlyRecorded); i--)
            if (Entries[i] == entry) return true;
        return false;
    }

    public AuditPage Page(DateTimeOffset since, int limit)
    {
        var matching = Entries.Where(e => e.At >= since).ToList();
        var take = Math.Clamp(limit, 1, AuditLogs.MaxPage);
        var truncated = matching.Count > take || (Entries.Count < Total && (Entries.Count == 0 || Entries[0].At >= since));
        return new AuditPage(Log, matching.Skip(Math.Max(0, matching.Count - take)).ToList(), truncated);
    }
}

/// <summary>
/// One audit log. Lifecycle: sharding starts it on the first message and passivates it when idle;
/// everything it holds is in its journal and snapshots, so a restart, a passivation or a move to
/// another node re-learns the whole log on recovery and nothing else needs to re-attach it.
/// </summary>
public sealed class AuditLogActor(string log, PersistenceSettings settings)
    : EventSourcedEntity<AuditLogState, AuditRecorded>(settings, AuditLogState.Empty(log))
{
    public override string PersistenceId => "audit-" + State.Log;

    /// <summary>The journal is the full record of who changed what, so its events stay however many snapshots cover them.</summary>
    protected override bool KeepsEventsCoveredBySnapshots => true;

    public static Props PropsFor(string log, PersistenceSettings settings) => Props.Create(() => new AuditLogActor(log, settings));

    protected override AuditLogState Apply(AuditLogState state, AuditRecorded @event) => state.Apply(@event);

    protected override bool IsCommand(object message) => message is RecordAudit;

    /// <summary>An entry sent again (the admin API retries one whose answer a failover lost) is stored once.</summary>
    protected override Decision<AuditRecorded> Decide(AuditLogState state, object command)
    {
        var entry = Bounded(((RecordAudit)command).Entry);
        return state.HoldsRecent(entry) ? Decision<AuditRecorded>.Unchanged : Decision<AuditRecorded>.Accept(new AuditRecorded(entry));
    }

    protected override bool TryAnswer(AuditLogState state, object message, out object reply)
    {
        reply = message switch
        {
            GetAuditLog get => state.Page(get.Since, get.Limit),
            GetAuditPlacement => new AuditPlacement(state.Log, Akka.Cluster.Cluster.Get(Context.System).SelfAddress.ToString()),
            _ => null!,
        };
        return reply is not null;
    }

    protected override object Acknowledge(object command, AuditLogState stateAfter) => new AuditAppended(stateAfter.Log, stateAfter.Total);

    private static AuditEntry Bounded(AuditEntry entry) => entry with
    {
        Actor = Cut(entry.Actor), Action = Cut(entry.Action), Target = Cut(entry.Target), Source = Cut(entry.Source),
    };

    private static string Cut(string text) => text.Length <= AuditLogs.MaxFieldLength ? text : text[..AuditLogs.MaxFieldLength];
}

public static class AuditLogRegistration
{
    /// <summary>
    /// The audit region. A tailnet's log has its tailnet's id, so its shard number, and
    /// <see cref="Hosting.CoLocatingAllocationStrategy"/> places it on its tailnet's node: an admin change,
    /// which the tailnet stores and the log records before it is answered, needs that one node. Placed
    /// anywhere else (as before), losing the log's node held up every change to a tailnet on a node that
    /// stayed, for as long as the failover took (5.1 s in one bench/failover run).
    /// </summary>
    public static AkkaConfigurationBuilder WithAuditLog(this AkkaConfigurationBuilder builder, PersistenceSettings persistence, int numberOfShards) => builder
        .WithCoLocatedShardRegion<AuditLogActor>("audit",
            _ => log => AuditLogActor.PropsFor(log, persistence),
            HashCodeMessageExtractor.Create(numberOfShards, message => (message as IAuditMessage)?.Log!),
            PersistentShards.OnDemand());
}
