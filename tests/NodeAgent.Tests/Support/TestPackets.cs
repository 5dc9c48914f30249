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

    /// <summary>An IPv4 TCP segment with the given flags (0x02 SYN, 0x12 SYN-ACK, 0x10 ACK).</summary>
    public static byte[] Tcp4(string source, string destination, int sourcePort, int destinationPort, byte flags = 0x02)
    {
        var packet = Ipv4(source, destination, Tcp, payloadLength: 20, fill: 0);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20), (ushort)sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(22), (ushort)destinationPort);
        packet[32] = 0x50;
        packet[33] = flags;
        return packet;
    }

    public static byte[] Udp4(string source, string destination, int sourcePort, int destinationPort)
    {
        var packet = Ipv4(source, destination, Udp, payloadLength: 16, fill: 0);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20), (ushort)sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(22), (ushort)destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(24), 16);
        return packet;
    }

    /// <summary>An ICMP echo request (type 8) or reply (type 0) with an identifier.</summary>
    public static byte[] Echo4(string source, string destination, byte type, int identifier)
    {
        var packet = Ipv4(source, destination, Icmp, payloadLength: 16, fill: 0);
        packet[20] = type;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(24), (ushort)identifier);
        return packet;
    }

    public static byte[] Udp6(string source, string destination, int sourcePort, int destinationPort)
    {
        var packet = Ipv6(source, destination, Udp, payloadLength: 16, fill: 0);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(40), (ushort)sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(42), (ushort)destinationPort);
        return packet;
    }
}
