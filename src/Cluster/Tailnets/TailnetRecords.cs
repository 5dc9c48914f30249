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
        .Add<TailnetState, Stored.TailnetSnapshot>("tn.snapshot",
            s => new() { TailnetId = s.TailnetId, Lifecycle = (int)s.Lifecycle, Settings = ToStored(s.Settings), CreatedAt = s.CreatedAt.ToStored() },
            p => new(p.TailnetId, (TailnetLifecycle)p.Lifecycle, FromStored(p.Settings), p.CreatedAt.ToTime()));

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
        new() { NodeKeyExpiryDays = settings.NodeKeyExpiryDays, DnsSuffix = settings.DnsSuffix };

    private static TailnetSettings FromStored(Stored.TailnetSettings? stored) =>
        stored is null ? TailnetRules.DefaultSettings("unknown") : new(stored.NodeKeyExpiryDays, stored.DnsSuffix);

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
}
