using System.Buffers.Binary;

namespace Weft.NodeAgent.WireGuard;

/// <summary>
/// The four WireGuard message layouts (protocols.md §1.2). All integers are little-endian; byte 0
/// is the type and bytes 1–3 are zero (wireguard-go reads the first 4 bytes as one LE uint32).
/// </summary>
public static class Messages
{
    public const uint TypeInitiation = 1;
    public const uint TypeResponse = 2;
    public const uint TypeCookieReply = 3;
    public const uint TypeTransport = 4;

    public const int InitiationSize = 148;
    public const int ResponseSize = 92;
    public const int CookieReplySize = 64;
    public const int TransportHeaderSize = 16;
    public const int TagSize = 16;
    public const int KeepaliveSize = TransportHeaderSize + TagSize;

    // Initiation offsets
    public const int InitiationSender = 4;
    public const int InitiationEphemeral = 8;
    public const int InitiationNoise = 8;          // e ‖ enc(s) ‖ enc(timestamp): 108 bytes
    public const int InitiationNoiseSize = 108;
    public const int InitiationMac1 = 116;
    public const int InitiationMac2 = 132;

    // Response offsets
    public const int ResponseSender = 4;
    public const int ResponseReceiver = 8;
    public const int ResponseNoise = 12;           // e ‖ enc(ε): 48 bytes
    public const int ResponseNoiseSize = 48;
    public const int ResponseMac1 = 60;
    public const int ResponseMac2 = 76;

    // Cookie reply offsets
    public const int CookieReceiver = 4;
    public const int CookieNonce = 8;
    public const int CookieEncrypted = 32;

    // Transport offsets
    public const int TransportReceiver = 4;
    public const int TransportCounter = 8;

    public const int MacSize = 16;

    /// <summary>The message type if the first four bytes are a valid WireGuard header, else 0.</summary>
    public static uint TypeOf(ReadOnlySpan<byte> packet) =>
        packet.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(packet) is var t and >= 1 and <= 4 ? t : 0 : 0;

    public static void WriteHeader(Span<byte> packet, uint type) => BinaryPrimitives.WriteUInt32LittleEndian(packet, type);

    public static uint ReadIndex(ReadOnlySpan<byte> packet, int offset) => BinaryPrimitives.ReadUInt32LittleEndian(packet[offset..]);

    public static void WriteIndex(Span<byte> packet, int offset, uint index) => BinaryPrimitives.WriteUInt32LittleEndian(packet[offset..], index);

    /// <summary>Where mac1 sits in a handshake message of the given type (initiation or response).</summary>
    public static int Mac1Offset(uint type) => type == TypeInitiation ? InitiationMac1 : ResponseMac1;

    public static int Mac2Offset(uint type) => type == TypeInitiation ? InitiationMac2 : ResponseMac2;

    /// <summary>Zeros appended to a plaintext: up to a multiple of 16, but never past the MTU (protocols.md §1.4).</summary>
    public static int PaddedLength(int length, int mtu)
    {
        if (length == 0) return 0; // keepalives are not padded
        var last = length > mtu ? length % mtu : length;
        var padded = Math.Min((last + Constants.PaddingMultiple - 1) & ~(Constants.PaddingMultiple - 1), mtu);
        return length + Math.Max(0, padded - last);
    }
}
