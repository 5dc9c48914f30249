using System.Threading.Channels;

namespace Weft.NodeAgent.Net.Tun;

/// <summary>
/// An in-memory TUN for tests and simulated nodes: <see cref="Inject"/> plays the host sending a
/// packet into the tunnel; packets the tunnel delivers to the host appear in <see cref="Delivered"/>.
/// </summary>
public sealed class VirtualTun(string name = "virtual0", int mtu = WireGuard.Constants.DefaultMtu) : ITunDevice
{
    private readonly Channel<byte[]> _fromHost = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(4096) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly Channel<byte[]> _toHost = Channel.CreateUnbounded<byte[]>();
    private volatile bool _closed;

    public string Name { get; } = name;

    public int Mtu { get; private set; } = mtu;

    public bool TrySetMtu(int mtu)
    {
        Mtu = mtu;
        return true;
    }

    public ChannelReader<byte[]> Delivered => _toHost.Reader;

    public void Inject(ReadOnlySpan<byte> packet) => _fromHost.Writer.TryWrite(packet.ToArray());

    public int ReadBatch(PacketBatch batch, int headroom, int timeoutMs)
    {
        if (_closed) return -1;
        if (!_fromHost.Reader.TryPeek(out _))
        {
            using var timeout = new CancellationTokenSource(timeoutMs);
            try
            {
                if (!_fromHost.Reader.WaitToReadAsync(timeout.Token).AsTask().GetAwaiter().GetResult()) return -1;
            }
            catch (OperationCanceledException)
            {
                return _closed ? -1 : 0;
            }
        }
        var count = 0;
        while (count < batch.Capacity && _fromHost.Reader.TryRead(out var packet))
        {
            packet.CopyTo(batch.Slot(count)[headroom..]);
            batch.Offsets[count] = headroom;
            batch.Lengths[count] = packet.Length;
            count++;
        }
        return count;
    }

    public bool Write(ReadOnlySpan<byte> packet) => !_closed && _toHost.Writer.TryWrite(packet.ToArray());

    public int WriteHeadroom => 0;

    public int WriteBatch(PacketBatch batch, ReadOnlySpan<int> slots)
    {
        var refused = 0;
        foreach (var slot in slots) if (!Write(batch.Packet(slot))) refused++;
        return refused;
    }

    public void Dispose()
    {
        _closed = true;
        _fromHost.Writer.TryComplete();
        _toHost.Writer.TryComplete();
    }
}
