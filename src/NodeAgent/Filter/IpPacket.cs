using System.Buffers.Binary;

namespace Weft.NodeAgent.Filter;

/// <summary>The parts of an IP packet a filter looks at, read without allocating. Addresses are 128-bit (IPv4 mapped).</summary>
public readonly struct IpPacket
{
    public const int NoPort = -1;

    public readonly byte Protocol;
    public readonly UInt128 Source;
    public readonly UInt128 Destination;
    public readonly bool IsIpv4;
    /// <summary>TCP/UDP/SCTP ports, or the ICMP echo identifier for echo messages; <see cref="NoPort"/> otherwise.</summary>
    public readonly int SourcePort;
    public readonly int DestinationPort;
    /// <summary>ICMP(v6) echo request or reply; a TCP SYN without ACK.</summary>
    public readonly bool IsEchoRequest, IsEchoReply, IsTcpSynOnly;
    /// <summary>An ICMP(v6) error about another packet: unreachable, time exceeded, parameter problem (and ICMPv6 packet too big).</summary>
    public readonly bool IsIcmpError;

    public bool IsIcmp => Protocol is 1 or 58;

    private IpPacket(byte protocol, UInt128 source, UInt128 destination, bool ipv4, int sourcePort, int destinationPort, bool echoRequest, bool echoReply, bool synOnly,
        bool icmpError)
    {
        IsIcmpError = icmpError;
        Protocol = protocol;
        Source = source;
        Destination = destination;
        IsIpv4 = ipv4;
        SourcePort = sourcePort;
        DestinationPort = destinationPort;
        IsEchoRequest = echoRequest;
        IsEchoReply = echoReply;
        IsTcpSynOnly = synOnly;
    }

    public static UInt128 MapIpv4(uint address) => ((UInt128)0xFFFF << 32) | address;

    /// <summary>Reads the header; false if this is not a whole IPv4 or IPv6 packet.</summary>
    public static bool TryRead(ReadOnlySpan<byte> packet, out IpPacket parsed)
    {
        parsed = default;
        if (packet.IsEmpty) return false;
        byte protocol;
        UInt128 source, destination;
        ReadOnlySpan<byte> payload;
        bool ipv4;
        var firstFragment = true;
        switch (packet[0] >> 4)
        {
            case 4:
                var headerLength = (packet[0] & 0x0F) * 4;
                if (headerLength < 20 || packet.Length < headerLength) return false;
                protocol = packet[9];
                source = MapIpv4(BinaryPrimitives.ReadUInt32BigEndian(packet[12..]));
                destination = MapIpv4(BinaryPrimitives.ReadUInt32BigEndian(packet[16..]));
                firstFragment = (BinaryPrimitives.ReadUInt16BigEndian(packet[6..]) & 0x1FFF) == 0;
                payload = packet[headerLength..];
                ipv4 = true;
                break;
            case 6:
                if (packet.Length < 40) return false;
                protocol = packet[6];
                source = BinaryPrimitives.ReadUInt128BigEndian(packet[8..]);
                destination = BinaryPrimitives.ReadUInt128BigEndian(packet[24..]);
                payload = packet[40..];
                ipv4 = false;
                // Walk the common extension headers to the transport header.
                for (var hops = 0; hops < 8 && protocol is 0 or 43 or 44 or 60; hops++)
                {
                    if (payload.Length < 8) return false;
                    if (protocol == 44)
                    {
                        firstFragment = (BinaryPrimitives.ReadUInt16BigEndian(payload[2..]) & 0xFFF8) == 0;
                        protocol = payload[0];
                        payload = payload[8..];
                        continue;
                    }
                    var length = (payload[1] + 1) * 8;
                    if (payload.Length < length) return false;
                    protocol = payload[0];
                    payload = payload[length..];
                }
                break;
            default:
                return false;
        }

        int sourcePort = NoPort, destinationPort = NoPort;
        bool echoRequest = false, echoReply = false, synOnly = false, icmpError = false;
        if (firstFragment)
        {
            switch (protocol)
            {
                case 6 or 17 or 132 when payload.Length >= 4:
                    sourcePort = BinaryPrimitives.ReadUInt16BigEndian(payload);
                    destinationPort = BinaryPrimitives.ReadUInt16BigEndian(payload[2..]);
                    if (protocol == 6 && payload.Length >= 14) synOnly = (payload[13] & 0x12) == 0x02;
                    break;
                case 1 or 58 when payload.Length >= 8:
                    var type = payload[0];
                    echoRequest = protocol == 1 ? type == 8 : type == 128;
                    echoReply = protocol == 1 ? type == 0 : type == 129;
                    icmpError = protocol == 1 ? type is 3 or 11 or 12 : type is >= 1 and <= 4;
                    if (echoRequest || echoReply) sourcePort = destinationPort = BinaryPrimitives.ReadUInt16BigEndian(payload[4..]);
                    break;
            }
        }
        parsed = new IpPacket(protocol, source, destination, ipv4, sourcePort, destinationPort, echoRequest, echoReply, synOnly, icmpError);
        return true;
    }
}
