namespace Weft.NodeAgent.Net.Tun;

/// <summary>
/// Where the tunnel meets the host's IP stack: a Linux TUN device, or an in-memory one for tests
/// and simulated nodes. Packets are bare IP packets (no packet-information header).
/// </summary>
public interface ITunDevice : IDisposable
{
    string Name { get; }

    int Mtu { get; }

    /// <summary>Changes the interface's MTU (path MTU probing proved a larger one, or lost it). False if the system refused.</summary>
    bool TrySetMtu(int mtu);

    /// <summary>
    /// Waits up to <paramref name="timeoutMs"/> for outbound packets from the host and reads as many
    /// as are ready into the batch, each at offset <paramref name="headroom"/>. Returns the count,
    /// 0 on timeout, -1 once the device is closed; throws <see cref="TunInterfaceGoneException"/> once
    /// the interface was deleted under it, and another <see cref="IOException"/> when the read fails otherwise.
    /// </summary>
    int ReadBatch(PacketBatch batch, int headroom, int timeoutMs);

    /// <summary>Hands one inbound packet to the host. False if the device refused it (full or closed).</summary>
    bool Write(ReadOnlySpan<byte> packet);

    /// <summary>
    /// Hands the packets in <paramref name="slots"/> (in order) to the host; a device with offloads
    /// may merge segments of one TCP flow. Each packet needs at least <see cref="WriteHeadroom"/>
    /// bytes free before it in its slot. Returns how many packets the device refused.
    /// </summary>
    int WriteBatch(PacketBatch batch, ReadOnlySpan<int> slots);

    /// <summary>Bytes the device may write in front of each packet given to <see cref="WriteBatch"/>.</summary>
    int WriteHeadroom { get; }
}

/// <summary>
/// The interface behind an open TUN descriptor was deleted (<c>ip link del</c>, another program): no
/// read or write on the descriptor will ever work again, and the interface's addresses and routes are gone.
/// </summary>
public sealed class TunInterfaceGoneException(string message) : IOException(message);
