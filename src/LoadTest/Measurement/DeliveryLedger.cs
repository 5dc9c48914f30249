using System.Diagnostics;
using HdrHistogram;
using Weft.NodeAgent.Control;

namespace Weft.LoadTest.Measurement;

/// <summary>
/// Every endpoint change the tester makes and what became of it at each peer that should see it.
/// A change from device S is due at every other device of S's tailnet. At each recipient it is:
/// <list type="bullet">
/// <item><b>delivered</b> when the recipient's store applies it (its latency is recorded);</item>
/// <item><b>superseded</b> when the recipient applies a later change of S first: the coordinator may
/// coalesce, as Tailscale's does, and only the last endpoint matters;</item>
/// <item><b>duplicated</b> when a delta patches in a change the recipient already holds;</item>
/// <item><b>out of order</b> when the recipient applies a change of S older than one it holds (a
/// full map that goes backwards counts too: it is a regression of state);</item>
/// <item><b>lost</b> when, once the run has drained, it is neither delivered nor superseded.</item>
/// </list>
/// Recipients report from their own actor threads; per recipient the record is single-threaded.
/// </summary>
public sealed class DeliveryLedger
{
    private const int ChunkBits = 16;
    private const int ChunkSize = 1 << ChunkBits;

    private readonly ChunkedArray<long> _sentAt = new();
    private readonly ChunkedArray<int> _source = new();
    private readonly ChunkedArray<int> _expected = new();
    private readonly ChunkedArray<int> _settled = new();
    private readonly ChunkedArray<byte> _phase = new();
    private readonly ChunkedArray<long> _settledAt = new();
    private readonly List<int>[] _changesBySource;
    // Sized for every phase there can be, so that recipients reading it never meet a reallocation.
    private readonly List<LongConcurrentHistogram> _phaseLatencies = new(byte.MaxValue);
    private LongConcurrentHistogram _interval = LatencyHistograms.Concurrent();
    private readonly LongConcurrentHistogram _all = LatencyHistograms.Concurrent();
    private int _count;
    private int _settledCursor;
    private long _expectedPairs;
    private long _delivered;
    private long _superseded;
    private long _duplicated;
    private long _outOfOrder;
    private long _unsettled;

    public DeliveryLedger(int agents)
    {
        _changesBySource = new List<int>[agents];
        for (var i = 0; i < agents; i++) _changesBySource[i] = [];
        BeginPhase();
    }

    public int Changes => Volatile.Read(ref _count);

    public long ExpectedPairs => Interlocked.Read(ref _expectedPairs);

    public long Delivered => Interlocked.Read(ref _delivered);

    public long Superseded => Interlocked.Read(ref _superseded);

    public long Duplicated => Interlocked.Read(ref _duplicated);

    public long OutOfOrder => Interlocked.Read(ref _outOfOrder);

    /// <summary>Changes not yet delivered or superseded at every recipient.</summary>
    public long Unsettled => Interlocked.Read(ref _unsettled);

    /// <summary>Recipient-changes neither delivered nor superseded: the loss, once the run has drained.</summary>
    public long Outstanding => ExpectedPairs - Delivered - Superseded;

    public IReadOnlyList<LongConcurrentHistogram> PhaseLatencies => _phaseLatencies;

    /// <summary>Every delivery of the run.</summary>
    public LongConcurrentHistogram Latencies => _all;

    /// <summary>Starts attributing new changes (and their deliveries) to a new phase; returns its index.</summary>
    public int BeginPhase()
    {
        lock (_phaseLatencies)
        {
            if (_phaseLatencies.Count == byte.MaxValue) throw new InvalidOperationException("too many phases");
            _phaseLatencies.Add(LatencyHistograms.Concurrent());
            return _phaseLatencies.Count - 1;
        }
    }

    /// <summary>
    /// Records a change from <paramref name="sourceAgent"/>, due at <paramref name="recipients"/>
    /// devices, sent now. Called by the one churn driver; returns the sequence the endpoint carries.
    /// </summary>
    public int Record(int sourceAgent, int recipients)
    {
        var sequence = _count;
        if (sequence == ChangeEndpoint.MaxSequence) throw new InvalidOperationException("the ledger is full");
        _source[sequence] = sourceAgent;
        _expected[sequence] = recipients;
        _phase[sequence] = (byte)(_phaseLatencies.Count - 1);
        Volatile.Write(ref _sentAt[sequence], Stopwatch.GetTimestamp());
        lock (_changesBySource[sourceAgent]) _changesBySource[sourceAgent].Add(sequence);
        Interlocked.Add(ref _expectedPairs, recipients);
        Interlocked.Increment(ref _unsettled);
        Volatile.Write(ref _count, sequence + 1);
        return sequence;
    }

    /// <summary>The agent whose change <paramref name="sequence"/> is, or null for a sequence this ledger never issued.</summary>
    public int? SourceOf(int sequence) => sequence >= 0 && sequence < Volatile.Read(ref _count) ? _source[sequence] : null;

    /// <summary>
    /// A recipient applied an endpoint carrying <paramref name="sequence"/>. <paramref name="lastBySource"/>
    /// is the recipient's own record (the latest change it holds per source), owned by its thread.
    /// <paramref name="fromPatch"/>: a delta set this endpoint (a full map or a whole-node change
    /// that repeats the held endpoint is no duplicate). Says how it counted.
    /// </summary>
    public Arrival Applied(Dictionary<int, int> lastBySource, int sequence, bool fromPatch, long now)
    {
        if (sequence < 0 || sequence >= Volatile.Read(ref _count)) return Arrival.NotFollowed;
        var source = _source[sequence];
        var held = lastBySource.TryGetValue(source, out var last) ? last : -1;
        if (sequence == held)
        {
            if (!fromPatch) return Arrival.Restated;
            Interlocked.Increment(ref _duplicated);
            return Arrival.Duplicate;
        }
        if (sequence < held)
        {
            Interlocked.Increment(ref _outOfOrder);
            return Arrival.OutOfOrder;
        }
        lastBySource[source] = sequence;
        var micros = LatencyHistograms.Between(Volatile.Read(ref _sentAt[sequence]), now);
        _phaseLatencies[_phase[sequence]].RecordValue(micros);
        _all.RecordValue(micros);
        Volatile.Read(ref _interval).RecordValue(micros);
        Interlocked.Increment(ref _delivered);
        Settle(sequence);

        // The changes of this source between the one held and this one will never come: superseded.
        var list = _changesBySource[source];
        lock (list)
        {
            var to = list.BinarySearch(sequence);
            var from = held < 0 ? 0 : list.BinarySearch(held) + 1;
            for (var i = from; i < to; i++)
            {
                Interlocked.Increment(ref _superseded);
                Settle(list[i]);
            }
        }
        return Arrival.New;
    }

    private void Settle(int sequence)
    {
        if (Interlocked.Increment(ref _settled[sequence]) != _expected[sequence]) return;
        Volatile.Write(ref _settledAt[sequence], Stopwatch.GetTimestamp());
        Interlocked.Decrement(ref _unsettled);
    }

    /// <summary>
    /// When the last of the changes sent between <paramref name="from"/> and <paramref name="to"/>
    /// (timestamps) reached every recipient, or null while any is still unsettled.
    /// </summary>
    public long? AllSettledAt(long from, long to)
    {
        long latest = 0;
        var count = Volatile.Read(ref _count);
        for (var sequence = 0; sequence < count; sequence++)
        {
            var sent = Volatile.Read(ref _sentAt[sequence]);
            if (sent < from || sent > to) continue;
            var settled = Volatile.Read(ref _settledAt[sequence]);
            if (settled == 0) return null;
            latest = Math.Max(latest, settled);
        }
        return latest == 0 ? to : latest;
    }

    /// <summary>How long ago the oldest change that is not yet settled everywhere was sent (zero when none is).</summary>
    public TimeSpan OldestUnsettledAge()
    {
        var count = Volatile.Read(ref _count);
        var cursor = _settledCursor;
        while (cursor < count && Volatile.Read(ref _settled[cursor]) >= _expected[cursor]) cursor++;
        _settledCursor = cursor;
        return cursor < count ? Stopwatch.GetElapsedTime(Volatile.Read(ref _sentAt[cursor])) : TimeSpan.Zero;
    }

    /// <summary>Latencies since the last call: the timeline's next point.</summary>
    public LongConcurrentHistogram TakeInterval() => Interlocked.Exchange(ref _interval, LatencyHistograms.Concurrent());

    /// <summary>An array that grows in fixed chunks, so that readers never see it moved.</summary>
    private sealed class ChunkedArray<T>
    {
        private readonly T[]?[] _chunks = new T[]?[(int)((1L << 31) >> ChunkBits)];

        public ref T this[int index]
        {
            get
            {
                var chunk = Volatile.Read(ref _chunks[index >> ChunkBits]);
                if (chunk is null)
                {
                    Interlocked.CompareExchange(ref _chunks[index >> ChunkBits], new T[ChunkSize], null);
                    chunk = _chunks[index >> ChunkBits]!;
                }
                return ref chunk[index & (ChunkSize - 1)];
            }
        }
    }
}

/// <summary>How a recipient's store taking an endpoint counted in the <see cref="DeliveryLedger"/>.</summary>
public enum Arrival
{
    /// <summary>Not a change of this run (an endpoint from the join, or of another shard's ledger).</summary>
    NotFollowed,
    /// <summary>A change newer than the one held: delivered (and what it skipped, superseded).</summary>
    New,
    /// <summary>The change held, restated by a full map or a whole node: no delivery, no fault.</summary>
    Restated,
    /// <summary>The change held, patched again.</summary>
    Duplicate,
    /// <summary>Older than the change held.</summary>
    OutOfOrder,
}
