using System.Collections.Concurrent;
using Weft.Contracts.Keys;
using Weft.NodeAgent.WireGuard;
using Weft.Relay;

namespace Weft.NodeAgent.Paths;

/// <summary>
/// The engine's way onto the relays (<see cref="IRelayTransport"/>): the live connection of each
/// region, set by its RelayClient actor. A packet for a region with no connection yet waits in a
/// small queue (the oldest dropped first) while the connection is asked for, so the first packet
/// to a new peer is not lost to the dial. Safe from every thread; never blocks.
/// </summary>
public sealed class RelayHub : IRelayTransport
{
    private const int PendingLimit = 64;
    private readonly ConcurrentDictionary<int, RelayClientConnection> _live = new();
    private readonly ConcurrentDictionary<int, ConcurrentQueue<(Curve25519PublicKey, byte[])>> _pending = new();
    private readonly ConcurrentDictionary<int, long> _lastUsed = new();
    private readonly ConcurrentDictionary<int, long> _asked = new();
    private readonly Action<int> _needRegion;

    /// <param name="needRegion">Asks for a connection to a region (called at most once per packet that waits).</param>
    public RelayHub(Action<int> needRegion) => _needRegion = needRegion;

    public bool Send(int region, Curve25519PublicKey destination, ReadOnlySpan<byte> packet)
    {
        _lastUsed[region] = Environment.TickCount64;
        if (_live.TryGetValue(region, out var connection) && !connection.IsClosed) return connection.TrySend(destination, packet);
        var queue = _pending.GetOrAdd(region, _ => new ConcurrentQueue<(Curve25519PublicKey, byte[])>());
        queue.Enqueue((destination, packet.ToArray()));
        while (queue.Count > PendingLimit) queue.TryDequeue(out _);
        // The connection may have come up since the look above, and Attach drained the queue before this
        // packet was in it (or took the queue away): then nobody else will send it.
        if (_live.TryGetValue(region, out connection) && !connection.IsClosed)
        {
            SendQueued(queue, connection);
            return true;
        }
        // Asked at most once a second per region: a region that is down must not turn every packet into a message.
        var now = Environment.TickCount64;
        var asked = _asked.GetOrAdd(region, 0);
        if (now - asked >= 1000 && _asked.TryUpdate(region, now, asked)) _needRegion(region);
        return true;
    }

    /// <summary>The connection for a region is up: packets waiting for it go out now.</summary>
    public void Attach(int region, RelayClientConnection connection)
    {
        _live[region] = connection;
        if (_pending.TryRemove(region, out var queue)) SendQueued(queue, connection);
    }

    private static void SendQueued(ConcurrentQueue<(Curve25519PublicKey, byte[])> queue, RelayClientConnection connection)
    {
        while (queue.TryDequeue(out var item)) connection.TrySend(item.Item1, item.Item2);
    }

    public void Detach(int region, RelayClientConnection connection) => _live.TryRemove(new KeyValuePair<int, RelayClientConnection>(region, connection));

    /// <summary>
    /// A packet arrived from <paramref name="region"/>: the connection is in use though we send nothing on it.
    /// A peer whose netmap still names that region as our home sends there (while our new home has not
    /// reached it, as when no coordinator answers), and closing it as idle would cut that peer off.
    /// </summary>
    public void Heard(int region) => _lastUsed[region] = Environment.TickCount64;

    /// <summary>Milliseconds since a packet was last sent to or received from <paramref name="region"/> (long.MaxValue if never).</summary>
    public long IdleMs(int region) => _lastUsed.TryGetValue(region, out var at) ? Environment.TickCount64 - at : long.MaxValue;
}
