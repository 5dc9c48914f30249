using System.Diagnostics;
using Akka.Actor;
using Weft.Contracts.Control;
using Weft.LoadTest.Measurement;
using Weft.NodeAgent.Control;

namespace Weft.LoadTest.Fleet;

/// <summary>
/// One simulated node: the agent's own <see cref="ControlClient"/> actor (keys, Noise stream,
/// registration, netmap store, reconnects and rotation all real), with no data plane. It watches its
/// own store from the actor's thread: when it joined, when it holds its whole tailnet, and which
/// change of each peer it holds, for the <see cref="DeliveryLedger"/>.
/// </summary>
public sealed class SimulatedAgent(int index, int tailnet, int expectedPeers)
{
    // Owned by the agent's actor thread (the observer runs there).
    private readonly Dictionary<int, int> _lastChangeBySource = new();
    private volatile bool _joined;
    private volatile bool _meshed;

    public int Index { get; } = index;

    /// <summary>The tailnet's position in the run (not its id).</summary>
    public int Tailnet { get; } = tailnet;

    public int ExpectedPeers { get; } = expectedPeers;

    public IActorRef Actor { get; set; } = ActorRefs.Nobody;

    /// <summary>The endpoint the tester last gave this node: what the cluster must end up holding for it.</summary>
    public string ReportedEndpoint { get; set; } = ChangeEndpoint.AtJoin(index);

    /// <summary>When the first netmap arrived (Stopwatch ticks), 0 before.</summary>
    public long JoinedAt { get; private set; }

    public bool Joined => _joined;

    /// <summary>Holds every other device of its tailnet.</summary>
    public bool Meshed => _meshed;

    internal void Observe(ServerMessage message, NetMapApplied applied, NetMapStore store, DeliveryLedger ledger, TrafficCounters traffic)
    {
        var now = Stopwatch.GetTimestamp();
        if (!_joined && store.HasMap)
        {
            JoinedAt = now;
            _joined = true;
        }
        if (!_meshed && store.HasMap && store.PeerCount == ExpectedPeers) _meshed = true;

        switch (message.BodyCase)
        {
            case ServerMessage.BodyOneofCase.Netmap when applied == NetMapApplied.Replaced:
                traffic.FullMap(message.Netmap.CalculateSize());
                foreach (var peer in message.Netmap.Peers) ApplyIfTaken(store, peer.Id, peer.Endpoints, peer.EndpointsVersion, fromPatch: false, now, ledger);
                break;
            case ServerMessage.BodyOneofCase.Delta when applied == NetMapApplied.Patched:
                var delta = message.Delta;
                traffic.Delta(delta.CalculateSize());
                foreach (var node in delta.PeersAdded) ApplyIfTaken(store, node.Id, node.Endpoints, node.EndpointsVersion, fromPatch: false, now, ledger);
                foreach (var node in delta.PeersChanged) ApplyIfTaken(store, node.Id, node.Endpoints, node.EndpointsVersion, fromPatch: false, now, ledger);
                foreach (var patch in delta.Patches)
                    if (patch.Endpoints is { } endpoints)
                        ApplyIfTaken(store, patch.Id, endpoints.Endpoints, patch.HasEndpointsVersion ? patch.EndpointsVersion : 0, fromPatch: true, now, ledger);
                break;
        }
    }

    /// <summary>
    /// Versioned endpoints count only where the store took them: it keeps a newer report it holds
    /// (<see cref="NetMapRules.Merged"/>), so an older one that arrives is not applied, and not a regression.
    /// </summary>
    private void ApplyIfTaken(NetMapStore store, string peerId, IEnumerable<string> endpoints, long version, bool fromPatch, long now, DeliveryLedger ledger)
    {
        if (version != 0 && (!store.TryGetPeer(peerId, out var held) || held.EndpointsVersion != version)) return;
        ApplyEndpoints(endpoints, fromPatch, now, ledger);
    }

    private void ApplyEndpoints(IEnumerable<string> endpoints, bool fromPatch, long now, DeliveryLedger ledger)
    {
        foreach (var endpoint in endpoints)
        {
            var sequence = ChangeEndpoint.SequenceOf(endpoint);
            if (sequence >= 0) ledger.Applied(_lastChangeBySource, sequence, fromPatch, now);
        }
    }
}

/// <summary>What the coordinators sent the fleet: deltas and full maps, counted and sized (protobuf bytes, before sealing).</summary>
public sealed class TrafficCounters
{
    private long _deltas;
    private long _deltaBytes;
    private long _fullMaps;
    private long _fullMapBytes;
    private long _largestFullMap;

    public long Deltas => Interlocked.Read(ref _deltas);

    public long DeltaBytes => Interlocked.Read(ref _deltaBytes);

    public long FullMaps => Interlocked.Read(ref _fullMaps);

    public long FullMapBytes => Interlocked.Read(ref _fullMapBytes);

    public long LargestFullMap => Interlocked.Read(ref _largestFullMap);

    public void Delta(int bytes)
    {
        Interlocked.Increment(ref _deltas);
        Interlocked.Add(ref _deltaBytes, bytes);
    }

    public void FullMap(int bytes)
    {
        Interlocked.Increment(ref _fullMaps);
        Interlocked.Add(ref _fullMapBytes, bytes);
        long seen;
        while (bytes > (seen = Interlocked.Read(ref _largestFullMap)) && Interlocked.CompareExchange(ref _largestFullMap, bytes, seen) != seen) { }
    }
}
