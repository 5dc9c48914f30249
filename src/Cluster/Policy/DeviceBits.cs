using System.Numerics;

namespace Weft.Cluster.Policy;

/// <summary>A growable set of device slots, one bit each: the policy engine's unit of work.</summary>
public sealed class DeviceBits
{
    private ulong[] _words;

    public DeviceBits(int capacity = 64) => _words = new ulong[Math.Max(1, (capacity + 63) / 64)];

    private DeviceBits(ulong[] words) => _words = words;

    public DeviceBits Clone() => new((ulong[])_words.Clone());

    public bool this[int slot] => slot / 64 < _words.Length && (_words[slot / 64] & (1UL << slot)) != 0;

    public void Set(int slot, bool value)
    {
        if (value)
        {
            Grow(slot);
            _words[slot / 64] |= 1UL << slot;
        }
        else if (slot / 64 < _words.Length)
        {
            _words[slot / 64] &= ~(1UL << slot);
        }
    }

    private void Grow(int slot)
    {
        if (slot / 64 < _words.Length) return;
        Array.Resize(ref _words, Math.Max(_words.Length * 2, slot / 64 + 1));
    }

    public void Or(DeviceBits other)
    {
        if (other._words.Length > _words.Length) Array.Resize(ref _words, other._words.Length);
        for (var i = 0; i < other._words.Length; i++) _words[i] |= other._words[i];
    }

    /// <summary>Adds the slots in both <paramref name="a"/> and <paramref name="b"/>.</summary>
    public void OrAnd(DeviceBits a, DeviceBits b)
    {
        var length = Math.Min(a._words.Length, b._words.Length);
        if (length > _words.Length) Array.Resize(ref _words, length);
        for (var i = 0; i < length; i++) _words[i] |= a._words[i] & b._words[i];
    }

    public void AndNot(DeviceBits other)
    {
        var length = Math.Min(_words.Length, other._words.Length);
        for (var i = 0; i < length; i++) _words[i] &= ~other._words[i];
    }

    public int Count
    {
        get
        {
            var count = 0;
            foreach (var word in _words) count += BitOperations.PopCount(word);
            return count;
        }
    }

    public IEnumerable<int> Slots()
    {
        for (var i = 0; i < _words.Length; i++)
        {
            var word = _words[i];
            while (word != 0)
            {
                var bit = BitOperations.TrailingZeroCount(word);
                yield return i * 64 + bit;
                word &= word - 1;
            }
        }
    }

    public bool SetEquals(DeviceBits other)
    {
        var length = Math.Max(_words.Length, other._words.Length);
        for (var i = 0; i < length; i++)
        {
            var mine = i < _words.Length ? _words[i] : 0;
            var theirs = i < other._words.Length ? other._words[i] : 0;
            if (mine != theirs) return false;
        }
        return true;
    }
}
