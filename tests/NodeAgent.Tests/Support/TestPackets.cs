using System.Buffers.Binary;
using System.Net;

namespace Weft.NodeAgent.Tests.Support;

/// <summary>Builds minimal IP packets for the packet-path tests.</summary>
public static class TestPackets
{
    public const byte Icmp = 1;
    public const byte Tcp = 6;
    public const byte Udp = 17;

    public static byte[] Ipv4(string source, string destination, byte protocol = Udp, int payloadLength = 64, byte fill = 0xab)
    {
        var packet = new byte[20 + payloadLength];
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
        packet[8] = 64;
        packet[9] = protocol;
        IPAddress.Parse(source).TryWriteBytes(packet.AsSpan(12), out _);
        IPAddress.Parse(destination).TryWriteBytes(packet.AsSpan(16), out _);
        packet.AsSpan(20).Fill(fill);
        return packet;
    }

    public static byte[] Ipv6(string source, string destination, byte nextHeader = Udp, int payloadLength = 64, byte fill = 0xcd)
    {
        var packet = new byte[40 + payloadLength];
        packet[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)payloadLength);
        packet[6] = nextHeader;
        packet[7] = 64;
        IPAddress.Parse(source).TryWriteBytes(packet.AsSpan(8), out _);
        IPAddress.Parse(destination).TryWriteBytes(packet.AsSpan(24), out _);
        packet.AsSpan(40).Fill(fill);
        return packet;
    }
}
