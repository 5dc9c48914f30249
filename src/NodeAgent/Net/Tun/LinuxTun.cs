using System.Net.Sockets;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Weft.NodeAgent.Net.Offload;

namespace Weft.NodeAgent.Net.Tun;

/// <summary>
/// A Linux TUN interface (<c>/dev/net/tun</c>, <c>IFF_TUN | IFF_NO_PI</c>). With offloads
/// (<c>IFF_VNET_HDR</c> plus TSO and checksum offload) the host hands us TCP packets of up to
/// 64 KiB, which we segment, and we hand it merged TCP segments, which saves the host's TCP stack
/// most of its per-packet work in both directions. Reads are non-blocking after a poll, so a burst
/// is read in one wake-up; writes that would block are dropped, as a full interface queue drops.
/// </summary>
public sealed unsafe class LinuxTun : ITunDevice
{
    private const int MaxRead = 65535 + VirtioNetHeader.Size;

    private readonly SafeFileHandle _handle;
    private readonly bool _offloads;
    private readonly byte[] _scratch;
    private readonly TcpCoalescer _coalescer = new();
    private readonly Libc.IoVec[] _iovs = GC.AllocateArray<Libc.IoVec>(MaxIovs, pinned: true);
    private const int MaxIovs = 256;

    // A segmented packet whose segments did not all fit in the last batch.
    private VirtioNetHeader _pendingHeader;
    private int _pendingLength;
    private int _pendingNext;
    private int _pendingCount;

    private LinuxTun(int fd, string name, int mtu, bool offloads)
    {
        _handle = new SafeFileHandle(fd, ownsHandle: true);
        Name = name;
        Mtu = mtu;
        _offloads = offloads;
        _scratch = GC.AllocateUninitializedArray<byte>(offloads ? MaxRead : 0, pinned: true);
    }

    public string Name { get; }

    public int Mtu { get; private set; }

    public bool TrySetMtu(int mtu)
    {
        if (mtu == Mtu) return true;
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        var request = RequestFor(Name);
        request.Value = mtu;
        if (Libc.ioctl((int)socket.Handle, Libc.SIOCSIFMTU, &request) < 0) return false;
        Mtu = mtu;
        return true;
    }

    /// <summary>True when TSO and checksum offload are on (the kernel agreed to them).</summary>
    public bool Offloads => _offloads;

    public int WriteHeadroom => _offloads ? VirtioNetHeader.Size : 0;

    /// <summary>Creates (or attaches to) TUN interface <paramref name="name"/>. Needs CAP_NET_ADMIN.</summary>
    public static LinuxTun Create(string name, int mtu, bool offloads = true)
    {
        if (Encoding.ASCII.GetByteCount(name) is 0 or > 15) throw new ArgumentException("an interface name is 1-15 characters", nameof(name));
        if (offloads)
        {
            var fd = Open(name, Libc.IFF_TUN | Libc.IFF_NO_PI | Libc.IFF_VNET_HDR);
            uint features = Libc.TUN_F_CSUM | Libc.TUN_F_TSO4 | Libc.TUN_F_TSO6;
            if (Libc.ioctl(fd, Libc.TUNSETOFFLOAD, (void*)features) == 0) return new LinuxTun(fd, name, mtu, offloads: true);
            Libc.close(fd); // the kernel refused offloads: fall back to plain packets
        }
        return new LinuxTun(Open(name, Libc.IFF_TUN | Libc.IFF_NO_PI), name, mtu, offloads: false);
    }

    private static Libc.IfReq RequestFor(string name)
    {
        Libc.IfReq request = default;
        var bytes = Encoding.ASCII.GetBytes(name);
        for (var i = 0; i < bytes.Length; i++) request.Name[i] = bytes[i];
        return request;
    }

    private static int Open(string name, short flags)
    {
        var fd = Libc.open("/dev/net/tun", Libc.O_RDWR | Libc.O_NONBLOCK | Libc.O_CLOEXEC);
        if (fd < 0) throw new IOException($"cannot open /dev/net/tun: {Libc.Describe(Libc.LastError)}");
        var request = RequestFor(name);
        request.Flags = flags;
        if (Libc.ioctl(fd, Libc.TUNSETIFF, &request) < 0)
        {
            var errno = Libc.LastError;
            Libc.close(fd);
            throw new IOException($"cannot create TUN interface {name}: {Libc.Describe(errno)}");
        }
        return fd;
    }

    public int ReadBatch(PacketBatch batch, int headroom, int timeoutMs)
    {
        var added = false;
        try
        {
            // Holding a reference keeps the fd from being closed (and its number reused) mid-call.
            _handle.DangerousAddRef(ref added);
            var fd = (int)_handle.DangerousGetHandle();
            return _offloads ? ReadOffloaded(fd, batch, headroom, timeoutMs) : ReadPlain(fd, batch, headroom, timeoutMs);
        }
        catch (ObjectDisposedException)
        {
            return -1;
        }
        finally
        {
            if (added) _handle.DangerousRelease();
        }
    }

    /// <summary>
    /// A read that failed with nothing read: again later if it was a signal or nothing was ready. The
    /// kernel detaches the descriptor of an interface deleted under the agent, and answers EBADFD from
    /// then on: the device is told it is gone for good. Otherwise the read loop hears why, and is
    /// started again after a pause, logging each time.
    /// </summary>
    private void ThrowUnlessTransient(int errno)
    {
        if (errno is Libc.EAGAIN or Libc.EINTR) return;
        if (errno == Libc.EBADFD) throw new TunInterfaceGoneException($"the TUN interface {Name} was deleted ({Libc.Describe(errno)})");
        throw new IOException($"reading from TUN interface {Name} failed: {Libc.Describe(errno)}");
    }

    private int ReadPlain(int fd, PacketBatch batch, int headroom, int timeoutMs)
    {
        if (!WaitReadable(fd, timeoutMs, out var closed)) return closed ? -1 : 0;
        var count = 0;
        while (count < batch.Capacity)
        {
            var read = Libc.read(fd, batch.SlotPointer(count) + headroom, (nuint)(batch.SlotSize - headroom));
            if (read <= 0)
            {
                if (read < 0 && count == 0) ThrowUnlessTransient(Libc.LastError);
                break;
            }
            batch.Offsets[count] = headroom;
            batch.Lengths[count] = (int)read;
            count++;
        }
        return count;
    }

    private int ReadOffloaded(int fd, PacketBatch batch, int headroom, int timeoutMs)
    {
        var count = EmitPending(batch, headroom, 0);
        if (_pendingCount > 0) return count;
        if (count == 0 && !WaitReadable(fd, timeoutMs, out var closed)) return closed ? -1 : 0;

        fixed (byte* scratch = _scratch)
        {
            while (count < batch.Capacity)
            {
                var read = Libc.read(fd, scratch, MaxRead);
                if (read <= 0)
                {
                    if (read < 0 && count == 0) ThrowUnlessTransient(Libc.LastError);
                    break;
                }
                if (read <= VirtioNetHeader.Size) continue;
                var header = VirtioNetHeader.Read(_scratch);
                var packet = _scratch.AsSpan(VirtioNetHeader.Size, (int)read - VirtioNetHeader.Size);
                if (header.GsoType == VirtioNetHeader.GsoNone)
                {
                    if ((header.Flags & VirtioNetHeader.FlagNeedsChecksum) != 0 && !TcpSegmentation.CompleteChecksum(packet, header)) continue;
                    if (packet.Length > batch.SlotSize - headroom) continue;
                    packet.CopyTo(batch.Slot(count)[headroom..]);
                    batch.Offsets[count] = headroom;
                    batch.Lengths[count] = packet.Length;
                    count++;
                }
                else if (header.GsoType is VirtioNetHeader.GsoTcpV4 or VirtioNetHeader.GsoTcpV6)
                {
                    _pendingHeader = header;
                    _pendingLength = packet.Length;
                    _pendingNext = 0;
                    _pendingCount = TcpSegmentation.SegmentCount(packet, header);
                    count = EmitPending(batch, headroom, count);
                    if (_pendingCount > 0) break; // the batch is full; the rest goes out next time
                }
                // Other GSO kinds were not enabled; they do not arrive.
            }
        }
        return count;
    }

    /// <summary>Writes the remaining segments of the pending TSO packet into free slots.</summary>
    private int EmitPending(PacketBatch batch, int headroom, int count)
    {
        var packet = _scratch.AsSpan(VirtioNetHeader.Size, _pendingLength);
        while (_pendingCount > 0 && count < batch.Capacity)
        {
            var length = TcpSegmentation.WriteSegment(packet, _pendingHeader, _pendingNext, batch.Slot(count)[headroom..]);
            _pendingNext++;
            _pendingCount--;
            if (length == 0) continue;
            batch.Offsets[count] = headroom;
            batch.Lengths[count] = length;
            count++;
        }
        return count;
    }

    private static bool WaitReadable(int fd, int timeoutMs, out bool closed)
    {
        var poll = new Libc.PollFd { Fd = fd, Events = Libc.POLLIN };
        var ready = Libc.poll(&poll, 1, timeoutMs);
        closed = ready > 0 && (poll.Revents & 0x20 /* POLLNVAL */) != 0;
        return ready > 0 && !closed;
    }

    public bool Write(ReadOnlySpan<byte> packet)
    {
        var added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            var fd = (int)_handle.DangerousGetHandle();
            if (!_offloads)
            {
                fixed (byte* data = packet)
                    return Libc.write(fd, data, (nuint)packet.Length) == packet.Length;
            }
            Span<byte> header = stackalloc byte[VirtioNetHeader.Size];
            header.Clear();
            var iovs = stackalloc Libc.IoVec[2];
            fixed (byte* h = header)
            fixed (byte* data = packet)
            {
                iovs[0] = new Libc.IoVec { Base = h, Length = VirtioNetHeader.Size };
                iovs[1] = new Libc.IoVec { Base = data, Length = (nuint)packet.Length };
                return Libc.writev(fd, iovs, 2) == VirtioNetHeader.Size + packet.Length;
            }
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
        finally
        {
            if (added) _handle.DangerousRelease();
        }
    }

    public int WriteBatch(PacketBatch batch, ReadOnlySpan<int> slots)
    {
        if (!_offloads)
        {
            var failed = 0;
            foreach (var slot in slots) if (!Write(batch.Packet(slot))) failed++;
            return failed;
        }

        var added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            var fd = (int)_handle.DangerousGetHandle();
            _coalescer.Plan(batch, slots);
            var refused = 0;
            fixed (Libc.IoVec* iovArray = _iovs)
            foreach (var group in _coalescer.Groups)
            {
                // The virtio_net_hdr goes in the headroom right before the head packet: one contiguous iovec.
                var header = TcpCoalescer.Finish(batch, group);
                var start = batch.Offsets[group.Head] - VirtioNetHeader.Size;
                header.Write(batch.Slot(group.Head)[start..]);
                var iovs = 0;
                var expected = VirtioNetHeader.Size + batch.Lengths[group.Head];
                iovArray[iovs++] = new Libc.IoVec { Base = batch.SlotPointer(group.Head) + start, Length = (nuint)expected };
                foreach (var follower in group.Followers)
                {
                    var payload = batch.Lengths[follower] - group.HeadersLength;
                    iovArray[iovs++] = new Libc.IoVec { Base = batch.SlotPointer(follower) + batch.Offsets[follower] + group.HeadersLength, Length = (nuint)payload };
                    expected += payload;
                }
                if (Libc.writev(fd, iovArray, iovs) != expected) refused += 1 + group.Followers.Count;
            }
            return refused;
        }
        catch (ObjectDisposedException)
        {
            return slots.Length;
        }
        finally
        {
            if (added) _handle.DangerousRelease();
        }
    }

    public void Dispose()
    {
        _handle.Dispose();
    }
}
