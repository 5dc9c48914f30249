using System.Buffers.Binary;

namespace Weft.NodeAgent.Net.Offload;

/// <summary>
/// The 10-byte <c>struct virtio_net_hdr</c> (linux/virtio_net.h) that prefixes every packet on a
/// TUN opened with IFF_VNET_HDR. It carries segmentation (GSO) and checksum-offload metadata, in
/// the host's byte order.
/// </summary>
public struct VirtioNetHeader
{
    public const int Size = 10;

    public const byte FlagNeedsChecksum = 1;   // VIRTIO_NET_HDR_F_NEEDS_CSUM: checksum from CsumStart to the end, store at CsumStart+CsumOffset
    public const byte GsoNone = 0;
    public const byte GsoTcpV4 = 1;
    public const byte GsoUdp = 3;
    public const byte GsoTcpV6 = 4;

    public byte Flags;
    public byte GsoType;
    public ushort HeaderLength;
    public ushort GsoSize;
    public ushort ChecksumStart;
    public ushort ChecksumOffset;

    public static VirtioNetHeader Read(ReadOnlySpan<byte> bytes) => new()
    {
        Flags = bytes[0],
        GsoType = bytes[1],
        HeaderLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes[2..]),
        GsoSize = BinaryPrimitives.ReadUInt16LittleEndian(bytes[4..]),
        ChecksumStart = BinaryPrimitives.ReadUInt16LittleEndian(bytes[6..]),
        ChecksumOffset = BinaryPrimitives.ReadUInt16LittleEndian(bytes[8..]),
    };

    public readonly void Write(Span<byte> bytes)
    {
        bytes[0] = Flags;
        bytes[1] = GsoType;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[2..], HeaderLength);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[4..], GsoSize);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[6..], ChecksumStart);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[8..], ChecksumOffset);
    }
}
