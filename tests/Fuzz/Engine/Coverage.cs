using System.Runtime.InteropServices;
using SharpFuzz.Common;

namespace Weft.Fuzz.Engine;

/// <summary>
/// Edge coverage, read in-process from SharpFuzz's instrumentation of the Weft assemblies (AFL's
/// scheme: every instrumented branch adds one to <c>map[location ^ previous]</c>). Hit counts are
/// bucketed as AFL does (1, 2, 3, 4–7, 8–15, 16–31, 32–127, 128+), so an input that takes a branch
/// more often counts as new too. Without <c>weft-fuzz instrument</c> the map stays empty and only
/// outcomes guide the fuzzer.
/// </summary>
public sealed unsafe class Coverage : IDisposable
{
    public const int MapSize = 1 << 16;

    private readonly byte* _map;
    private readonly byte[] _seen = new byte[MapSize];
    private int _edges;

    public Coverage()
    {
        _map = (byte*)NativeMemory.AllocZeroed(MapSize);
        Trace.SharedMem = _map;
    }

    /// <summary>Edges (map slots) the current harness has reached so far.</summary>
    public int Edges => _edges;

    /// <summary>Called before each input.</summary>
    public void Reset()
    {
        NativeMemory.Clear(_map, MapSize);
        Trace.PrevLocation = 0;
    }

    /// <summary>A new harness starts from nothing seen.</summary>
    public void ForgetSeen()
    {
        Array.Clear(_seen);
        _edges = 0;
    }

    /// <summary>After an input: true if it reached an edge, or a hit-count bucket of one, not reached before.</summary>
    public bool TakeNew()
    {
        var fresh = false;
        var words = (ulong*)_map;
        for (var w = 0; w < MapSize / sizeof(ulong); w++)
        {
            if (words[w] == 0) continue;
            for (var i = w * sizeof(ulong); i < (w + 1) * sizeof(ulong); i++)
            {
                var count = _map[i];
                if (count == 0) continue;
                var bucket = Bucket(count);
                if ((_seen[i] & bucket) != 0) continue;
                if (_seen[i] == 0) _edges++;
                _seen[i] |= bucket;
                fresh = true;
            }
        }
        return fresh;
    }

    private static byte Bucket(byte count) => count switch
    {
        1 => 1,
        2 => 2,
        3 => 4,
        <= 7 => 8,
        <= 15 => 16,
        <= 31 => 32,
        <= 127 => 64,
        _ => 128,
    };

    public void Dispose()
    {
        Trace.SharedMem = null;
        NativeMemory.Free(_map);
    }
}
