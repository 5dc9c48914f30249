using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Weft.NodeAgent.Net.Tun;

/// <summary>
/// A Linux TUN interface (<c>/dev/net/tun</c>, <c>IFF_TUN | IFF_NO_PI</c>). Reads are non-blocking
/// after a poll, so a burst of packets is read in one wake-up; writes that would block are dropped,
/// as a full interface queue drops.
/// </summary>
public sealed unsafe class LinuxTun : ITunDevice
{
    private readonly SafeFileHandle _handle;

    private LinuxTun(int fd, string name, int mtu)
    {
        _handle = new SafeFileHandle(fd, ownsHandle: true);
        Name = name;
        Mtu = mtu;
    }

    public string Name { get; }

    public int Mtu { get; }

    /// <summary>Creates (or attaches to) TUN interface <paramref name="name"/>. Needs CAP_NET_ADMIN.</summary>
    public static LinuxTun Create(string name, int mtu)
    {
        if (Encoding.ASCII.GetByteCount(name) is 0 or > 15) throw new ArgumentException("an interface name is 1-15 characters", nameof(name));
        var fd = Libc.open("/dev/net/tun", Libc.O_RDWR | Libc.O_NONBLOCK | Libc.O_CLOEXEC);
        if (fd < 0) throw new IOException($"cannot open /dev/net/tun: {Libc.Describe(Libc.LastError)}");

        Libc.IfReq request = default;
        var bytes = Encoding.ASCII.GetBytes(name);
        for (var i = 0; i < bytes.Length; i++) request.Name[i] = bytes[i];
        request.Flags = Libc.IFF_TUN | Libc.IFF_NO_PI;
        if (Libc.ioctl(fd, Libc.TUNSETIFF, &request) < 0)
        {
            var errno = Libc.LastError;
            Libc.close(fd);
            throw new IOException($"cannot create TUN interface {name}: {Libc.Describe(errno)}");
        }
        return new LinuxTun(fd, name, mtu);
    }

    public int ReadBatch(PacketBatch batch, int headroom, int timeoutMs)
    {
        var added = false;
        try
        {
            // Holding a reference keeps the fd from being closed (and its number reused) mid-call.
            _handle.DangerousAddRef(ref added);
            return ReadBatchOn((int)_handle.DangerousGetHandle(), batch, headroom, timeoutMs);
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

    private int ReadBatchOn(int fd, PacketBatch batch, int headroom, int timeoutMs)
    {
        var poll = new Libc.PollFd { Fd = fd, Events = Libc.POLLIN };
        var ready = Libc.poll(&poll, 1, timeoutMs);
        if (ready <= 0) return _handle.IsClosed ? -1 : 0;

        var count = 0;
        while (count < batch.Capacity)
        {
            var slot = batch.SlotPointer(count) + headroom;
            var read = Libc.read(fd, slot, (nuint)(batch.SlotSize - headroom));
            if (read <= 0)
            {
                var errno = Libc.LastError;
                if (read < 0 && errno is not (Libc.EAGAIN or Libc.EINTR) && count == 0) return -1;
                break;
            }
            batch.Offsets[count] = headroom;
            batch.Lengths[count] = (int)read;
            count++;
        }
        return count;
    }

    public bool Write(ReadOnlySpan<byte> packet)
    {
        var added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            fixed (byte* data = packet)
                return Libc.write((int)_handle.DangerousGetHandle(), data, (nuint)packet.Length) == packet.Length;
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

    public void Dispose() => _handle.Dispose();
}
