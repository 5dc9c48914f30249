using System.Collections.Concurrent;

namespace Weft.Relay;

/// <summary>
/// What the relay did and refused, by reason: every refused login, malformed frame and dropped
/// packet is counted here under a short name (see <see cref="Snapshot"/>), so an operator can
/// see why, and tests can prove that bad input was refused for the right reason.
/// </summary>
public sealed class RelayCounters
{
    private readonly ConcurrentDictionary<string, long> _refused = new();
    private readonly ConcurrentDictionary<string, long> _dropped = new();
    private long _packetsForwarded;
    private long _bytesForwarded;
    private long _packetsMeshed;

    public void Refused(string reason) => _refused.AddOrUpdate(reason, 1, (_, n) => n + 1);

    public void Dropped(string reason) => _dropped.AddOrUpdate(reason, 1, (_, n) => n + 1);

    public void Forwarded(int bytes)
    {
        Interlocked.Increment(ref _packetsForwarded);
        Interlocked.Add(ref _bytesForwarded, bytes);
    }

    public void Meshed() => Interlocked.Increment(ref _packetsMeshed);

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
