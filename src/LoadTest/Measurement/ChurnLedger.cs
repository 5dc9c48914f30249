using HdrHistogram;
using Weft.Contracts.Control;
using Weft.LoadTest.Fleet;
using Weft.LoadTest.Reporting;
using Weft.LoadTest.Scenarios;
using Weft.NodeAgent.Control;

namespace Weft.LoadTest.Measurement;

/// <summary>The membership and policy churn a run follows to its peers.</summary>
public enum ChurnKind
{
    /// <summary>A node joined: due at its group's measured peers once they hold it (from when the tester started it).</summary>
    Joined,
    /// <summary>An admin deleted a node: due once its peers dropped it (from the delete request).</summary>
    Left,
    /// <summary>An ephemeral node disconnected: due once its peers dropped it (from the disconnect, so the tailnet's ephemeral timeout is included).</summary>
    EphemeralGone,
    /// <summary>A policy edit: due at every measured node of the tailnet once its filter carries the edit's marker (from the edit's answer).</summary>
    PolicyEdited,
}

/// <summary>
/// Joins, leaves, ephemeral expiry and policy edits, each followed to every measured node that must
/// see it. A node settles an event when its store shows it (the peer is there, the peer is gone, the
/// filter carries the edit or a later one); an event not settled everywhere once the run drained is
/// lost. Measured nodes report from their own actor threads; pending events are kept per tailnet,
/// so a node of a quiet tailnet pays one read.
/// </summary>
public sealed class ChurnLedger
{
    private sealed class Tracked(int id, ChurnKind kind, int group, long startedAt, int expected)
    {
        public int Id { get; } = id;
        public ChurnKind Kind { get; } = kind;
        /// <summary>The policy group whose nodes must see it; -1 for every node of the tailnet.</summary>
        public int Group { get; } = group;
        public long StartedAt { get; } = startedAt;
        public int Expected { get; } = expected;
        public HashSet<int> SettledBy { get; } = [];
        public string? Name { get; init; }
        public string? DeviceId { get; set; }
        public int Marker { get; init; }
    }

    private readonly List<Tracked>[] _pending;
    private readonly int[] _pendingCount;
    private readonly LongConcurrentHistogram[] _latency = [.. Enum.GetValues<ChurnKind>().Select(_ => LatencyHistograms.Concurrent())];
    private readonly long[] _events = new long[Enum.GetValues<ChurnKind>().Length];
    private readonly long[] _expected = new long[Enum.GetValues<ChurnKind>().Length];
    private readonly long[] _settled = new long[Enum.GetValues<ChurnKind>().Length];
    private int _nextId;

    public ChurnLedger(int tailnets)
    {
        _pending = new List<Tracked>[tailnets];
        for (var t = 0; t < tailnets; t++) _pending[t] = [];
        _pendingCount = new int[tailnets];
    }

    /// <summary>Recipient-events not yet settled.</summary>
    public long Unsettled
    {
        get
        {
            long open = 0;
            for (var k = 0; k < _expected.Length; k++) open += Interlocked.Read(ref _expected[k]) - Interlocked.Read(ref _settled[k]);
            return open;
        }
    }

    public long EventsOf(ChurnKind kind) => Interlocked.Read(ref _events[(int)kind]);

    /// <summary>
    /// Starts following an event due at <paramref name="recipients"/> measured nodes. Returns its id.
    /// A join is known by the node's name (its peers may hear of it before it hears its own device id);
    /// a removal by its device id; an edit by its marker.
    /// </summary>
    public int Begin(ChurnKind kind, int tailnet, int group, int recipients, long startedAt, string? name = null, string? deviceId = null, int marker = 0)
    {
        var id = Interlocked.Increment(ref _nextId);
        Interlocked.Increment(ref _events[(int)kind]);
        if (recipients <= 0) return id;
        if (kind == ChurnKind.Joined && name is null) throw new ArgumentException("a join is followed by the node's name", nameof(name));
        if (kind is ChurnKind.Left or ChurnKind.EphemeralGone && deviceId is null) throw new ArgumentException("a removal is followed by the device id", nameof(deviceId));
        Interlocked.Add(ref _expected[(int)kind], recipients);
        lock (_pending[tailnet])
        {
            _pending[tailnet].Add(new Tracked(id, kind, group, startedAt, recipients) { Name = name, DeviceId = deviceId, Marker = marker });
            Volatile.Write(ref _pendingCount[tailnet], _pending[tailnet].Count);
        }
        return id;
    }

    /// <summary>Whether every recipient of the event has settled it.</summary>
    public bool IsSettled(int tailnet, int id)
    {
        lock (_pending[tailnet]) return _pending[tailnet].All(e => e.Id != id);
    }

    /// <summary>A measured node's store after a message: settles what it now shows.</summary>
    internal void Observe(SimulatedAgent agent, ServerMessage message, NetMapStore store, long now)
    {
        if (Volatile.Read(ref _pendingCount[agent.Tailnet]) == 0) return;
        HashSet<string>? names = null;
        var marker = -1;
        var pending = _pending[agent.Tailnet];
        lock (pending)
        {
            for (var i = pending.Count - 1; i >= 0; i--)
            {
                var e = pending[i];
                if ((e.Group >= 0 && e.Group != agent.Group) || e.SettledBy.Contains(agent.Index)) continue;
                var shows = e.Kind switch
                {
                    ChurnKind.Joined => (names ??= NamesIn(message)).Contains(e.Name!) || (e.DeviceId is { } id && store.TryGetPeer(id, out _)),
                    ChurnKind.Left or ChurnKind.EphemeralGone => !store.TryGetPeer(e.DeviceId!, out _),
                    _ => (marker = marker >= 0 ? marker : LoadPolicy.MarkerIn(store.Filter)) >= e.Marker,
                };
                if (!shows) continue;
                e.SettledBy.Add(agent.Index);
                _latency[(int)e.Kind].RecordValue(LatencyHistograms.Between(e.StartedAt, now));
                Interlocked.Increment(ref _settled[(int)e.Kind]);
                if (e.SettledBy.Count >= e.Expected) pending.RemoveAt(i);
            }
            Volatile.Write(ref _pendingCount[agent.Tailnet], pending.Count);
        }
    }

    /// <summary>A joiner learned its device id: its peers may also be checked by id from now on (a full map after a reconnect names it too).</summary>
    public void Identify(int tailnet, string name, string deviceId)
    {
        lock (_pending[tailnet])
            foreach (var e in _pending[tailnet])
                if (e.Kind == ChurnKind.Joined && e.Name == name) e.DeviceId = deviceId;
    }

    private static HashSet<string> NamesIn(ServerMessage message)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        switch (message.BodyCase)
        {
            case ServerMessage.BodyOneofCase.Netmap:
                foreach (var peer in message.Netmap.Peers) names.Add(peer.Name);
                break;
            case ServerMessage.BodyOneofCase.Delta:
                foreach (var peer in message.Delta.PeersAdded) names.Add(peer.Name);
                foreach (var peer in message.Delta.PeersChanged) names.Add(peer.Name);
                break;
        }
        return names;
    }

    /// <summary>The latency histogram of each kind that had events, by its name.</summary>
    public IReadOnlyDictionary<string, HistogramBase> LatencyByKind =>
        Enum.GetValues<ChurnKind>().Where(k => EventsOf(k) > 0).ToDictionary(k => k.ToString(), k => (HistogramBase)_latency[(int)k]);

    /// <summary>Per kind: events, recipient-events due, settled and lost, and the latency to each recipient.</summary>
    public IReadOnlyList<ChurnKindResult> Summarize(Func<HistogramBase, LatencySummary> summarize) =>
        [.. Enum.GetValues<ChurnKind>().Where(k => EventsOf(k) > 0).Select(k => new ChurnKindResult(
            k.ToString(), EventsOf(k), Interlocked.Read(ref _expected[(int)k]), Interlocked.Read(ref _settled[(int)k]),
            Interlocked.Read(ref _expected[(int)k]) - Interlocked.Read(ref _settled[(int)k]), summarize(_latency[(int)k])))];
}
