using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Weft.NodeAgent.WireGuard;

/// <summary>
/// A peer's UDP address, with its sockaddr bytes precomputed so the packet path can hand it to
/// sendmmsg without work. Immutable: roaming swaps in a new instance.
/// <para>
/// A relay path is an endpoint too (<see cref="ForRelay"/>): the peer's node key on a relay region.
/// Its address is the placeholder <c>127.3.3.40:&lt;region&gt;</c> (Tailscale's convention) and is
/// never sent to; the engine hands such packets to its <see cref="IRelayTransport"/>.
/// </para>
/// </summary>
public sealed class Endpoint : IEquatable<Endpoint>
{
    public const int MaxSockaddrSize = 28;

    private readonly byte[] _sockaddr;

    public Endpoint(IPEndPoint address)
    {
        var ip = address.Address.IsIPv4MappedToIPv6 ? address.Address.MapToIPv4() : address.Address;
        Address = new IPEndPoint(ip, address.Port);
        _sockaddr = ToSockaddr(Address);
    }

    public IPEndPoint Address { get; }

    /// <summary>The placeholder address of relay paths.</summary>
    public static readonly IPAddress RelayPlaceholder = IPAddress.Parse("127.3.3.40");

    /// <summary>A relay path: the relay region, 0 for a direct UDP endpoint.</summary>
    public int RelayRegion { get; private init; }

    /// <summary>On a relay path, the node key packets are addressed to.</summary>
    public Weft.Contracts.Keys.Curve25519PublicKey RelayPeer { get; private init; }

    public bool IsRelay => RelayRegion != 0;

    /// <summary>The path through relay region <paramref name="region"/> to the node <paramref name="peer"/>.</summary>
    public static Endpoint ForRelay(int region, Weft.Contracts.Keys.Curve25519PublicKey peer)
    {
        if (region is <= 0 or > 65535) throw new ArgumentOutOfRangeException(nameof(region), "relay regions are 1-65535");
        return new Endpoint(new IPEndPoint(RelayPlaceholder, region)) { RelayRegion = region, RelayPeer = peer };
    }

    public bool IsIPv4 => Address.AddressFamily == AddressFamily.InterNetwork;

    public ReadOnlySpan<byte> Sockaddr => _sockaddr;

    public static Endpoint Parse(string text)
    {
        if (!IPEndPoint.TryParse(text, out var address) || address.Port == 0)
            throw new FormatException($"'{text}' is not an IP:port endpoint");
        return new Endpoint(address);
    }

    /// <summary>Reads a sockaddr_in or sockaddr_in6 as the kernel filled it.</summary>
    public static Endpoint? FromSockaddr(ReadOnlySpan<byte> sockaddr)
    {
        if (sockaddr.Length < 2) return null;
        var family = BinaryPrimitives.ReadUInt16LittleEndian(sockaddr);
        if (family == 2 && sockaddr.Length >= 16)
            return new Endpoint(new IPEndPoint(new IPAddress(sockaddr.Slice(4, 4)), BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..])));
        if (family == 10 && sockaddr.Length >= 28)
            return new Endpoint(new IPEndPoint(new IPAddress(sockaddr.Slice(8, 16), BinaryPrimitives.ReadUInt32LittleEndian(sockaddr[24..])),
                BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..])));
        return null;
    }

    /// <summary>True if the kernel's sockaddr for a received packet is this endpoint (no allocation).</summary>
    public bool Matches(ReadOnlySpan<byte> sockaddr) =>
        IsIPv4 ? sockaddr.Length >= 8 && sockaddr[..8].SequenceEqual(_sockaddr.AsSpan(0, 8))
               : sockaddr.Length >= 24 && sockaddr[..4].SequenceEqual(_sockaddr.AsSpan(0, 4)) && sockaddr.Slice(8, 16).SequenceEqual(_sockaddr.AsSpan(8, 16));

    private static byte[] ToSockaddr(IPEndPoint address)
    {
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var bytes = new byte[16];
            BinaryPrimitives.WriteUInt16LittleEndian(bytes, 2);               // AF_INET
            BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(2), (ushort)address.Port);
            address.Address.TryWriteBytes(bytes.AsSpan(4, 4), out _);
            return bytes;
        }
        var v6 = new byte[28];
        BinaryPrimitives.WriteUInt16LittleEndian(v6, 10);                       // AF_INET6
        BinaryPrimitives.WriteUInt16BigEndian(v6.AsSpan(2), (ushort)address.Port);
        address.Address.TryWriteBytes(v6.AsSpan(8, 16), out _);
        BinaryPrimitives.WriteUInt32LittleEndian(v6.AsSpan(24), (uint)address.Address.ScopeId);
        return v6;
    }

    public override string ToString() => IsRelay ? $"relay:{RelayRegion}" : Address.ToString();

    public bool Equals(Endpoint? other) => other is not null && Address.Equals(other.Address) && RelayPeer == other.RelayPeer;

    public override bool Equals(object? obj) => Equals(obj as Endpoint);

    public override int GetHashCode() => HashCode.Combine(Address, RelayPeer);
}
