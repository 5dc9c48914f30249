using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Weft.Relay;

/// <summary>
/// What the relay did and refused, by reason: every refused login, malformed frame and dropped
/// packet is counted here under a short name (see <see cref="Snapshot"/>), so an operator can
/// see why, and tests can prove that bad input was refused for the right reason. The same counts
/// go to the <c>Weft.Relay</c> meter (<see cref="RelayMetrics"/>), which a host exports (the
/// coordinator, for its embedded relay, at <c>/metrics</c>).
/// Each count goes to the meter first: whoever sees a count here (a test, the snapshot) can rely
/// on the meter already holding it.
/// </summary>
public sealed class RelayCounters
{
    private readonly ConcurrentDictionary<string, long> _refused = new();
    private readonly ConcurrentDictionary<string, long> _dropped = new();
    private long _packetsForwarded;
    private long _bytesForwarded;
    private long _packetsMeshed;
    private long _accessUnconfirmed;
    private long _accessRechecksFailed;

    public void Refused(string reason)
    {
        RelayMetrics.Refused.Add(1, new KeyValuePair<string, object?>("reason", reason));
        _refused.AddOrUpdate(reason, 1, (_, n) => n + 1);
    }

    public void Dropped(string reason)
    {
        RelayMetrics.Dropped.Add(1, new KeyValuePair<string, object?>("reason", reason));
        _dropped.AddOrUpdate(reason, 1, (_, n) => n + 1);
    }

    public void Forwarded(int bytes)
    {
        RelayMetrics.Packets.Add(1, RelayMetrics.ForwardedHere);
        RelayMetrics.Bytes.Add(bytes);
        Interlocked.Increment(ref _packetsForwarded);
        Interlocked.Add(ref _bytesForwarded, bytes);
    }

    public void Meshed()
    {
        RelayMetrics.Packets.Add(1, RelayMetrics.ForwardedToMesh);
        Interlocked.Increment(ref _packetsMeshed);
    }

    /// <summary>
    /// The issuer's answer about one ticket, at its login or on a later check of the live connections: allowed, revoked,
    /// or unconfirmed (null: it could not tell in time, and the ticket got in, or the connection stayed, on its
    /// signature alone).
    /// </summary>
    public void AccessChecked(bool? allowed, bool recheck)
    {
        RelayMetrics.AccessChecks.Add(1, new KeyValuePair<string, object?>("answer", allowed switch { true => "allowed", false => "revoked", null => "unconfirmed" }),
            recheck ? RelayMetrics.OnRecheck : RelayMetrics.AtLogin);
        if (allowed is null) Interlocked.Increment(ref _accessUnconfirmed);
    }

    /// <summary>Tickets let in, or live connections kept, on their signature alone, because the cluster did not answer the access check in time.</summary>
    public long AccessesUnconfirmed => Interlocked.Read(ref _accessUnconfirmed);

    /// <summary>A sweep over the live connections' access that failed as a whole (a fault of the relay, not an unanswered check).</summary>
    public void AccessRechecksFailed()
    {
        RelayMetrics.AccessRecheckFailures.Add(1);
        Interlocked.Increment(ref _accessRechecksFailed);
    }

    public long AccessRecheckFailures => Interlocked.Read(ref _accessRechecksFailed);

    public long RefusedFor(string reason) => _refused.GetValueOrDefault(reason);

    public long DroppedFor(string reason) => _dropped.GetValueOrDefault(reason);

    public long PacketsForwarded => Interlocked.Read(ref _packetsForwarded);

    public long BytesForwarded => Interlocked.Read(ref _bytesForwarded);

    public long PacketsMeshed => Interlocked.Read(ref _packetsMeshed);

    public RelayCountersSnapshot Snapshot() => new(PacketsForwarded, BytesForwarded, PacketsMeshed,
        new SortedDictionary<string, long>(_refused), new SortedDictionary<string, long>(_dropped));
}

public sealed record RelayCountersSnapshot(long PacketsForwarded, long BytesForwarded, long PacketsMeshed,
    IReadOnlyDictionary<string, long> Refused, IReadOnlyDictionary<string, long> Dropped);

/// <summary>The relay's instruments (meter <c>Weft.Relay</c>), fed by every <see cref="RelayCounters"/> in the process.</summary>
public static class RelayMetrics
{
    public const string MeterName = "Weft.Relay";

    private static readonly Meter Meter = new(MeterName);

    internal static readonly KeyValuePair<string, object?> ForwardedHere = new("path", "local");
    internal static readonly KeyValuePair<string, object?> ForwardedToMesh = new("path", "mesh");

    /// <summary>Packets forwarded, to a client of this relay (path=local) or to a meshed relay (path=mesh).</summary>
    public static readonly Counter<long> Packets = Meter.CreateCounter<long>("weft.relay.packets", "{packet}",
        "Packets the relay forwarded, to its own clients (path=local) or one hop to a meshed relay (path=mesh)");

    public static readonly Counter<long> Bytes = Meter.CreateCounter<long>("weft.relay.bytes", "By",
        "Payload bytes the relay forwarded to its own clients");

    public static readonly Counter<long> Dropped = Meter.CreateCounter<long>("weft.relay.drops", "{packet}",
        "Packets the relay dropped, by reason (unknown_destination, queue_full, ...)");

    public static readonly Counter<long> Refused = Meter.CreateCounter<long>("weft.relay.refused", "{connection}",
        "Logins and frames the relay refused, by reason (bad_ticket, idle_timeout, ...)");

    internal static readonly KeyValuePair<string, object?> AtLogin = new("when", "login");
    internal static readonly KeyValuePair<string, object?> OnRecheck = new("when", "recheck");

    /// <summary>Tickets the relay asked the cluster about, by answer (allowed, revoked, unconfirmed) and when (login, recheck).</summary>
    public static readonly Counter<long> AccessChecks = Meter.CreateCounter<long>("weft.relay.access_checks", "{ticket}",
        "Tickets the relay asked the cluster about, at login or on the periodic check of live connections, by answer: allowed, revoked, " +
        "or unconfirmed (the cluster could not tell in time; the ticket got in, or the connection stayed, on its signature alone)");

    public static readonly Counter<long> AccessRecheckFailures = Meter.CreateCounter<long>("weft.relay.access_recheck_failures", "{sweep}",
        "Checks of the live connections' access that failed as a whole (a fault in the relay; the next runs as planned)");
}
