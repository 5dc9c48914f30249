using Weft.Cluster.Persistence;

namespace Weft.Cluster.Audit;

public static class AuditRecords
{
    public static RecordCodecs AddAuditRecords(this RecordCodecs codecs) => codecs
        .Add<AuditRecorded, Stored.AuditRecorded>("audit.recorded", e => new() { Entry = ToStored(e.Entry) }, p => new(FromStored(p.Entry)))
        .Add<AuditLogState, Stored.AuditSnapshot>("audit.snapshot",
            s => new() { Log = s.Log, Entries = { s.Entries.Select(ToStored) }, Total = s.Total },
            p => new(p.Log, [.. p.Entries.Select(FromStored)], p.Total));

    private static Stored.AuditEntry ToStored(AuditEntry entry) => new()
    {
        At = entry.At.ToStored(), Actor = entry.Actor, Action = entry.Action, Target = entry.Target, Status = entry.Status, Source = entry.Source,
    };

    private static AuditEntry FromStored(Stored.AuditEntry? stored) => stored is null
        ? new AuditEntry(DateTimeOffset.UnixEpoch, "", "", "", 0, "")
        : new AuditEntry(stored.At.ToTime(), stored.Actor, stored.Action, stored.Target, stored.Status, stored.Source);
}
