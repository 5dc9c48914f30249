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
/// change of each peer it holds, for the <see cref="DeliveryLedger"/>. The fleet that joins first is
/// measured; nodes that join during the churn (and may leave again) are not, but their peers follow
/// them through the <see cref="ChurnLedger"/>.
/// </summary>
public sealed class SimulatedAgent(int index, int tailnet, int group, int expectedPeers, bool measured = true)
{
    // Owned by the agent's actor thread (the observer runs there).
    private readonly Dictionary<int, int> _lastChangeBySource = new();
    private long _lastFullMapAt;
    private ulong _lastFullMapVersion;
    private int _fullMapsReceived;
    /// <summary>Full maps that came again within <see cref="RepeatWindowSeconds"/> described on stderr so far (the first few of the run).</summary>
    private static int s_repeatsDescribed;
    private const int RepeatsToDescribe = 10;
    private const double RepeatWindowSeconds = 30;
    private volatile bool _joined;
    /// <summary>Duplicates and steps back described on stderr so far, in the whole run: the first few say what came, and after what.</summary>
    private static int s_faultsDescribed;
    private const int FaultsToDescribe = 20;
    private volatile bool _meshed;

    public int Index { get; } = index;

    /// <summary>The tailnet's position in the run (not its id).</summary>
    public int Tailnet { get; } = tailnet;

    /// <summary>Its policy group in its tailnet (0 with the default policy).</summary>
    public int Group { get; } = group;

    public int ExpectedPeers { get; } = expectedPeers;

    /// <summary>Part of the fleet that joined first: endpoint changes and churn are followed to it.</summary>
    public bool Measured { get; } = measured;

    /// <summary>Keeps thin peer records (<see cref="ThinPeers"/>) instead of whole nodes.</summary>
    public bool Thin { get; init; }

    /// <summary>Joined with an ephemeral key.</summary>
    public bool Ephemeral { get; init; }

    /// <summary>Its name as its peers see it (the hostname it registers with).</summary>
    public string Name => $"sim-{Index}";

    /// <summary>Its device id, once its first netmap arrived.</summary>
    public string? DeviceId { get; private set; }

    /// <summary>The <see cref="ChurnLedger"/> event of its join (nodes that join during the churn).</summary>
    public int JoinEvent { get; set; }

    /// <summary>Deleted, or disconnected for good: no longer part of the fleet that must converge.</summary>
    public bool Gone { get; set; }

    public IActorRef Actor { get; set; } = ActorRefs.Nobody;

    /// <summary>The endpoint the tester last gave this node: what the cluster must end up holding for it.</summary>
    public string ReportedEndpoint { get; set; } = ChangeEndpoint.AtJoin(index);

    /// <summary>When the first netmap arrived (Stopwatch ticks), 0 before.</summary>
    public long JoinedAt { get; private set; }

    public bool Joined => _joined;

    /// <summary>Holds every other device of its tailnet.</summary>
    public bool Meshed => _meshed;

    /// <summary>Full netmaps this node's store was replaced with so far (its first one included).</summary>
    public int FullMapsReceived => Volatile.Read(ref _fullMapsReceived);

    internal void Observe(ServerMessage message, NetMapApplied applied, NetMapStore store, DeliveryLedger ledger, ChurnLedger churn, TrafficCounters traffic)
    {
        var now = Stopwatch.GetTimestamp();
        if (!_joined && store.HasMap)
        {
            DeviceId = store.Self!.Id;
            JoinedAt = now;
            _joined = true;
            if (!Measured) churn.Identify(Tailnet, Name, DeviceId);
        }
        if (!_meshed && store.HasMap && store.PeerCount == ExpectedPeers) _meshed = true;
        // Every node's traffic counts; only the measured ones follow changes.
        if (message.BodyCase == ServerMessage.BodyOneofCase.Netmap && applied == NetMapApplied.Replaced)
        {
            traffic.FullMap(message.Netmap.CalculateSize());
            if (_lastFullMapAt != 0 && Stopwatch.GetElapsedTime(_lastFullMapAt, now).TotalSeconds < RepeatWindowSeconds) DescribeRepeat(message.Netmap.Version, now);
            _lastFullMapAt = now;
            _lastFullMapVersion = message.Netmap.Version;
            Interlocked.Increment(ref _fullMapsReceived);
        }
        if (message.BodyCase == ServerMessage.BodyOneofCase.Delta && applied == NetMapApplied.Patched) traffic.Delta(message.Delta.CalculateSize());
        if (!Measured) return;
        churn.Observe(this, message, store, now);

        switch (message.BodyCase)
        {
            case ServerMessage.BodyOneofCase.Netmap when applied == NetMapApplied.Replaced:
                foreach (var peer in message.Netmap.Peers) ApplyIfTaken(store, peer.Id, peer.Endpoints, peer.EndpointsVersion, "a full map", null, fromPatch: false, now, ledger);
                break;
            case ServerMessage.BodyOneofCase.Delta when applied == NetMapApplied.Patched:
                var delta = message.Delta;
                foreach (var node in delta.PeersAdded) ApplyIfTaken(store, node.Id, node.Endpoints, node.EndpointsVersion, "a peer added in", delta, fromPatch: false, now, ledger);
                foreach (var node in delta.PeersChanged) ApplyIfTaken(store, node.Id, node.Endpoints, node.EndpointsVersion, "a peer restated in", delta, fromPatch: false, now, ledger);
                foreach (var patch in delta.Patches)
                    if (patch.Endpoints is { } endpoints)
                        ApplyIfTaken(store, patch.Id, endpoints.Endpoints, patch.HasEndpointsVersion ? patch.EndpointsVersion : 0, "a patch of", delta, fromPatch: true, now, ledger);
                break;
        }
    }

    /// <summary>
    /// Versioned endpoints count only where the store took them: it keeps a newer report it holds
    /// (<see cref="NetMapRules.Merged"/>), so an older one that arrives is not applied, and not a regression.
    /// A duplicate or a step back is described (the first few of the run) with what the store held before:
    /// <paramref name="how"/> and <paramref name="delta"/> say what brought it, and are formatted only then.
    /// </summary>
    private void ApplyIfTaken(NetMapStore store, string peerId, IEnumerable<string> endpoints, long version, string how, NetMapDelta? delta, bool fromPatch, long now, DeliveryLedger ledger)
    {
        if (version != 0 && (!store.TryGetPeer(peerId, out var held) || held.EndpointsVersion != version)) return;
        foreach (var endpoint in endpoints)
        {
            var sequence = ChangeEndpoint.SequenceOf(endpoint);
            if (sequence < 0) continue;
            var arrival = ledger.Applied(_lastChangeBySource, sequence, fromPatch, now);
            // Neither moves the record on: it still holds the change it held before.
            if (arrival is Arrival.Duplicate or Arrival.OutOfOrder) Describe(arrival, peerId, endpoint, sequence, _lastChangeBySource[ledger.SourceOf(sequence)!.Value], version, how, delta, now);
        }
    }

    /// <summary>
    /// A full map soon after another (the first few of the run): whether the second came from the same
    /// epoch of the device's stream (the upper 32 bits of the version: the same device entity answering
    /// twice) or a new one (the entity started again) says which part of the cluster repeated itself.
    /// </summary>
    private void DescribeRepeat(ulong version, long now)
    {
        if (Interlocked.Increment(ref s_repeatsDescribed) > RepeatsToDescribe) return;
        var sameEpoch = version >> 32 == _lastFullMapVersion >> 32;
        Console.Error.WriteLine($"full map again: {Name} got version {version} {Stopwatch.GetElapsedTime(_lastFullMapAt, now).TotalMilliseconds:0} ms after " +
            $"version {_lastFullMapVersion} ({(sameEpoch ? "the same epoch of its device's stream" : $"epoch {version >> 32} after {_lastFullMapVersion >> 32}")})");
    }

    private void Describe(Arrival arrival, string peerId, string endpoint, int sequence, int held, long version, string how, NetMapDelta? delta, long now)
    {
        if (Interlocked.Increment(ref s_faultsDescribed) > FaultsToDescribe) return;
        var sinceFullMap = _lastFullMapAt == 0 ? "no full map yet" : $"{Stopwatch.GetElapsedTime(_lastFullMapAt, now).TotalMilliseconds:0} ms after its full map of version {_lastFullMapVersion}";
        var what = arrival == Arrival.Duplicate ? "duplicate" : "out of order";
        Console.Error.WriteLine($"{what}: {Name} got peer {peerId}'s endpoint {endpoint} (change {sequence}, endpoints version {version}) in {how}" +
            (delta is null ? "" : $" delta {delta.BaseVersion}->{delta.Version}") + ", " +
            $"holding change {held}, {sinceFullMap}");
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
