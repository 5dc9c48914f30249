using Weft.Contracts.Disco;
using Weft.Contracts.Stun;

namespace Weft.NodeAgent.Paths;

/// <summary>What shares the tunnel's UDP socket, told apart by shape.</summary>
public enum DatagramKind
{
    WireGuard,
    Disco,
    Stun,
    Unknown,
}

/// <summary>
/// The tunnel's one UDP socket, shared by WireGuard, disco and STUN (Tailscale's magicsock): the
/// WireGuard engine owns the socket and its receive threads; whatever is not a WireGuard message is
/// offered here and told apart by its shape: STUN by its magic cookie, disco by its magic prefix.
/// WireGuard messages start with a type 1-4 and three zero bytes, which neither of the others can.
/// </summary>
public static class MagicSocket
{
    public static DatagramKind Classify(ReadOnlySpan<byte> datagram)
    {
        if (datagram.Length >= 4 && datagram[0] is >= 1 and <= 4 && datagram[1] == 0 && datagram[2] == 0 && datagram[3] == 0) return DatagramKind.WireGuard;
        if (DiscoPacket.HasMagic(datagram)) return DatagramKind.Disco;
        if (StunMessage.LooksLikeStun(datagram)) return DatagramKind.Stun;
        return DatagramKind.Unknown;
    }
}
