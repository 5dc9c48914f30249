namespace Weft.Cluster.Devices;

/// <summary>
/// The recent deltas of one device's stream, so that an agent that reconnects can resume from its
/// version instead of taking a full map. Bounded by entries and by bytes, oldest dropped first.
/// <para>
/// Memory is what it is about: every connected device keeps one. The entries sit in one ring of
/// structs (no node per entry), and each keeps the tailnet's delta bytes as they came, unwrapped:
/// the tailnet hands the same array to every recipient whose delta is identical (one endpoint
/// change goes to every peer of the device), so those bytes are held once for all of them. A delta
/// is numbered (<see cref="VersionStamp.Delta"/>) each time it is sent, not when it is kept.
/// </para>
/// </summary>
public sealed class DeltaLog(int maxEntries, int maxBytes)
{
    private readonly record struct Entry(ulong BaseVersion, ulong Version, byte[] Delta);

    private Entry[] _ring = [];
    private int _first;

    public int Count { get; private set; }

    public int Bytes { get; private set; }

    public void Add(ulong baseVersion, ulong version, byte[] delta)
    {
        if (Count == _ring.Length) Grow();
        _ring[(_first + Count) % _ring.Length] = new Entry(baseVersion, version, delta);
        Count++;
        Bytes += delta.Length;
        while (Count > maxEntries || (Bytes > maxBytes && Count > 1)) DropOldest();
    }

    /// <summary>Whether the log can bring a stream at <paramref name="version"/> up to date: some delta starts there.</summary>
    public bool CanResumeFrom(ulong version) => IndexOfBase(version) >= 0;

    /// <summary>The deltas after <paramref name="version"/>, oldest first, each numbered as it was first sent; nothing if it cannot resume.</summary>
    public IEnumerable<(byte[] Message, ulong Version)> After(ulong version)
    {
        var from = IndexOfBase(version);
        if (from < 0) yield break;
        for (var i = from; i < Count; i++)
        {
            var entry = At(i);
            yield return (VersionStamp.Delta(entry.Delta, entry.BaseVersion, entry.Version), entry.Version);
        }
    }

    /// <summary>Forgets everything (a full map went out: a client behind it needs that map, not these deltas), and gives the memory back.</summary>
    public void Clear()
    {
        _ring = [];
        _first = 0;
        Bytes = 0;
        Count = 0;
    }

    private Entry At(int index) => _ring[(_first + index) % _ring.Length];

    /// <summary>Where the delta that starts at <paramref name="version"/> sits, oldest first; -1 if none does.</summary>
    private int IndexOfBase(ulong version)
    {
        for (var i = 0; i < Count; i++)
            if (At(i).BaseVersion == version) return i;
        return -1;
    }

    private void DropOldest()
    {
        Bytes -= _ring[_first].Delta.Length;
        _ring[_first] = default;
        _first = (_first + 1) % _ring.Length;
        Count--;
    }

    // Starts small (most devices see few changes) and doubles up to the entry limit.
    private void Grow()
    {
        var grown = new Entry[Math.Min(Math.Max(4, _ring.Length * 2), Math.Max(maxEntries + 1, 4))];
        for (var i = 0; i < Count; i++) grown[i] = At(i);
        _ring = grown;
        _first = 0;
    }
}
