using Weft.Cluster.Devices;

namespace Weft.Cluster.Tailnets;

/// <summary>
/// What one tailnet incarnation sent each device's entity, numbered (<see cref="FanOutStamp"/>): the entity
/// notices a gap when a later message arrives, and this side notices a lost last message when the entity's
/// heartbeat says it heard less than was sent a while ago. Held in memory only: a new incarnation starts new
/// counts under a new random number, and starts every device from a full map anyway.
/// </summary>
public sealed class FanOutNumbering(TimeProvider clock)
{
    /// <summary>How long a message may still be on its way: a heartbeat that has not heard it yet says nothing sooner.</summary>
    public static readonly TimeSpan InFlightAllowance = TimeSpan.FromSeconds(5);

    private readonly long _incarnation = NewIncarnation();
    // Per device: the last number sent, when, and the number an earlier heartbeat found not heard (0: none).
    private readonly Dictionary<string, (long Sequence, long SentAt, long Suspected)> _sent = new(StringComparer.Ordinal);

    private static long NewIncarnation()
    {
        long incarnation;
        do incarnation = Random.Shared.NextInt64(); while (incarnation == 0);
        return incarnation;
    }

    /// <summary>The stamp of the next message to <paramref name="deviceId"/>.</summary>
    public FanOutStamp Next(string deviceId)
    {
        var sequence = (_sent.TryGetValue(deviceId, out var sent) ? sent.Sequence : 0) + 1;
        _sent[deviceId] = (sequence, clock.GetTimestamp(), 0);
        return new FanOutStamp(_incarnation, sequence);
    }

    /// <summary>
    /// Whether the device's entity, which last heard <paramref name="heard"/>, missed the last thing this incarnation
    /// sent it: two heartbeats in a row, the first at least <see cref="InFlightAllowance"/> after it was sent, said they
    /// had not heard it. One is not enough: it may have been made just before the message arrived and then waited in a
    /// busy mailbox. An entity that heard nothing since it started knows nothing to compare: its next session starts
    /// from a full map.
    /// </summary>
    public bool Missed(string deviceId, FanOutStamp heard)
    {
        if (heard.IsNone || !_sent.TryGetValue(deviceId, out var sent) || clock.GetElapsedTime(sent.SentAt) < InFlightAllowance) return false;
        if (heard.Incarnation == _incarnation && heard.Sequence >= sent.Sequence)
        {
            if (sent.Suspected != 0) _sent[deviceId] = sent with { Suspected = 0 };
            return false;
        }
        if (sent.Suspected == sent.Sequence) return true;
        _sent[deviceId] = sent with { Suspected = sent.Sequence };
        return false;
    }

    /// <summary>Drops the counts of devices the tailnet no longer has.</summary>
    public void Prune(Func<string, bool> stillHere)
    {
        foreach (var deviceId in _sent.Keys.Where(id => !stillHere(id)).ToList()) _sent.Remove(deviceId);
    }
}
