using System.Collections.Concurrent;
using System.Security.Cryptography;
using Weft.Contracts.Noise;

namespace Weft.NodeAgent.WireGuard;

/// <summary>An initiation we sent and await a response to.</summary>
public sealed class PendingHandshake(NoiseHandshake noise, uint localIndex, long createdMs) : IDisposable
{
    public NoiseHandshake Noise { get; } = noise;

    public uint LocalIndex { get; } = localIndex;

    public long CreatedMs { get; } = createdMs;

    public void Dispose() => Noise.Dispose();
}

/// <summary>What a local index names: a peer, and either the handshake in progress or the keypair it became.</summary>
public sealed class IndexEntry(Peer peer)
{
    public Peer Peer { get; } = peer;

    public volatile PendingHandshake? Handshake;

    public volatile Keypair? Keypair;
}

/// <summary>
/// Local session indices (wireguard-go indextable.go): random 32-bit values, unique on this device,
/// that peers put in the receiver field so a packet finds its session without a search.
/// </summary>
public sealed class IndexTable
{
    private readonly ConcurrentDictionary<uint, IndexEntry> _entries = new();

    public int Count => _entries.Count;

    public uint Add(IndexEntry entry)
    {
        Span<byte> random = stackalloc byte[4];
        while (true)
        {
            RandomNumberGenerator.Fill(random);
            var index = BitConverter.ToUInt32(random);
            if (index != 0 && _entries.TryAdd(index, entry)) return index;
        }
    }

    public bool TryGet(uint index, out IndexEntry entry) => _entries.TryGetValue(index, out entry!);

    public void Remove(uint index) => _entries.TryRemove(index, out _);

    public void RemoveAllOf(Peer peer)
    {
        foreach (var (index, entry) in _entries)
            if (entry.Peer == peer) _entries.TryRemove(index, out _);
    }
}
