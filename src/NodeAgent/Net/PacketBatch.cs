using System.Runtime.InteropServices;

namespace Weft.NodeAgent.Net;

/// <summary>
/// A fixed set of packet buffers in native memory, with the iovec and mmsghdr arrays that point at
/// them, so one recvmmsg or sendmmsg moves many datagrams and nothing is allocated per packet.
/// Each slot also holds a peer address (sockaddr, up to 28 bytes).
/// </summary>
public sealed unsafe class PacketBatch : IDisposable
{
    public const int AddressSize = 28;

    private readonly byte* _buffers;
    private readonly byte* _addresses;
    internal readonly Libc.IoVec* Iovs;
    internal readonly Libc.MMsgHdr* Headers;

    public PacketBatch(int capacity, int slotSize)
    {
        Capacity = capacity;
        SlotSize = slotSize;
        _buffers = (byte*)NativeMemory.AlignedAlloc((nuint)(capacity * slotSize), 64);
        _addresses = (byte*)NativeMemory.AllocZeroed((nuint)(capacity * AddressSize));
        Iovs = (Libc.IoVec*)NativeMemory.AllocZeroed((nuint)(capacity * sizeof(Libc.IoVec)));
        Headers = (Libc.MMsgHdr*)NativeMemory.AllocZeroed((nuint)(capacity * sizeof(Libc.MMsgHdr)));
        Offsets = new int[capacity];
        Lengths = new int[capacity];
        AddressLengths = new int[capacity];
    }

    public int Capacity { get; }

    public int SlotSize { get; }

    /// <summary>Where each slot's packet starts (room before it is headroom, e.g. for a transport header).</summary>
    public int[] Offsets { get; }

    public int[] Lengths { get; }

    public int[] AddressLengths { get; }

    public Span<byte> Slot(int index) => new(_buffers + (long)index * SlotSize, SlotSize);

    public Span<byte> Packet(int index) => Slot(index).Slice(Offsets[index], Lengths[index]);

    public Span<byte> Address(int index) => new(_addresses + (long)index * AddressSize, AddressSize);

    internal byte* SlotPointer(int index) => _buffers + (long)index * SlotSize;

    internal byte* AddressPointer(int index) => _addresses + (long)index * AddressSize;

    public void Dispose()
    {
        NativeMemory.AlignedFree(_buffers);
        NativeMemory.Free(_addresses);
        NativeMemory.Free(Iovs);
        NativeMemory.Free(Headers);
    }
}
