using System.Buffers.Binary;
using System.Net;

namespace Weft.Cluster.Tests.Support;

/// <summary>Minimal IP packets for checking an agent's compiled filter.</summary>
public static class Packets
{
    /// <param name="size">The whole packet's length: the segment carries zeros up to it.</param>
    /// <param name="dontFragment">Sets IPv4's Don't Fragment, as TCP stacks do.</param>
    public static byte[] Tcp4(string source, string destination, int sourcePort, int destinationPort, byte flags = 0x02, int size = 40, bool dontFragment = false)
    {
        var packet = new byte[Math.Max(40, size)];
        if (dontFragment) packet[6] = 0x40;
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
        packet[8] = 64;
        packet[9] = 6;
        IPAddress.Parse(source).TryWriteBytes(packet.AsSpan(12), out _);
        IPAddress.Parse(destination).TryWriteBytes(packet.AsSpan(16), out _);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20), (ushort)sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(22), (ushort)destinationPort);
        packet[32] = 0x50;
        packet[33] = flags;
        return packet;
    }
}
