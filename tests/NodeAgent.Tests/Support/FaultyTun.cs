using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;

namespace Weft.NodeAgent.Tests.Support;

/// <summary>A TUN that passes everything to the one it wraps, except the next read or write a test asks to fail: that one throws.</summary>
public sealed class FaultyTun(ITunDevice inner) : ITunDevice
{
    private Exception? _nextRead;
    private Exception? _nextWrite;

    /// <summary>Set once a read or write has thrown the failure it was given.</summary>
    public ManualResetEventSlim ReadFailed { get; } = new();

    public ManualResetEventSlim WriteFailed { get; } = new();

    public void FailNextRead(Exception failure) => Volatile.Write(ref _nextRead, failure);

    public void FailNextWrite(Exception failure) => Volatile.Write(ref _nextWrite, failure);

    public string Name => inner.Name;

    public int Mtu => inner.Mtu;

    public bool TrySetMtu(int mtu) => inner.TrySetMtu(mtu);

    public int ReadBatch(PacketBatch batch, int headroom, int timeoutMs)
    {
        if (Interlocked.Exchange(ref _nextRead, null) is { } failure)
        {
            ReadFailed.Set();
            throw failure;
        }
        return inner.ReadBatch(batch, headroom, timeoutMs);
    }

    public bool Write(ReadOnlySpan<byte> packet)
    {
        ThrowIfWriteFails();
        return inner.Write(packet);
    }

    public int WriteHeadroom => inner.WriteHeadroom;

    public int WriteBatch(PacketBatch batch, ReadOnlySpan<int> slots)
    {
        ThrowIfWriteFails();
        return inner.WriteBatch(batch, slots);
    }

    private void ThrowIfWriteFails()
    {
        if (Interlocked.Exchange(ref _nextWrite, null) is not { } failure) return;
        WriteFailed.Set();
        throw failure;
    }

    public void Dispose()
    {
        inner.Dispose();
        ReadFailed.Dispose();
        WriteFailed.Dispose();
    }
}
