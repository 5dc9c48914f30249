using Google.Protobuf.WellKnownTypes;

namespace Weft.Cluster.Persistence;

/// <summary>Timestamps are stored as UTC protobuf Timestamps, exact to the tick.</summary>
public static class StoredTime
{
    public static Timestamp ToStored(this DateTimeOffset time) => Timestamp.FromDateTimeOffset(time);

    public static DateTimeOffset ToTime(this Timestamp? stored) =>
        stored is null ? DateTimeOffset.UnixEpoch : stored.ToDateTimeOffset();

    public static Timestamp? ToStored(this DateTimeOffset? time) => time?.ToStored();

    public static DateTimeOffset? ToOptionalTime(this Timestamp? stored) => stored?.ToDateTimeOffset();
}
