using System.Net;
using System.Net.Sockets;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Net;

/// <summary>
/// The UDP side of the tunnel: one IPv4 and (where the host has IPv6) one IPv6 socket on the same
/// port, read and written in batches with recvmmsg/sendmmsg. WireGuard, disco and STUN all share
/// it, which is why this is ours and not a kernel WireGuard socket.
/// </summary>
public sealed unsafe class UdpTransport : IDisposable
{
    private const int SocketBufferBytes = 4 << 20;
    private const int ReceiveTimeoutMs = 200;

    private readonly Socket _v4;
    private readonly Socket? _v6;

    private UdpTransport(Socket v4, Socket? v6)
    {
        _v4 = v4;
        _v6 = v6;
    }

    public int Port => ((IPEndPoint)_v4.LocalEndPoint!).Port;

    public IReadOnlyList<Socket> Sockets => _v6 is null ? [_v4] : [_v4, _v6];

    public static UdpTransport Bind(int port)
    {
        var v4 = Open(AddressFamily.InterNetwork, new IPEndPoint(IPAddress.Any, port));
        var bound = ((IPEndPoint)v4.LocalEndPoint!).Port;
        Socket? v6 = null;
        try
        {
            v6 = Open(AddressFamily.InterNetworkV6, new IPEndPoint(IPAddress.IPv6Any, bound));
        }
        catch (SocketException)
        {
            // No IPv6 on this host (or the port is taken for v6 only): IPv4 alone works.
        }
        return new UdpTransport(v4, v6);
    }

    private static Socket Open(AddressFamily family, IPEndPoint address)
    {
        var socket = new Socket(family, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            if (family == AddressFamily.InterNetworkV6) socket.DualMode = false;
            socket.ReceiveTimeout = ReceiveTimeoutMs;
            // Tunnel packets must leave by the machine's own routes, never by a route into the tunnel (an exit node's default route).
            PolicyRouting.MarkBypass(socket);
            socket.Bind(address);
            SetBuffer(socket, SocketOptionName.ReceiveBuffer, 33 /* SO_RCVBUFFORCE */);
            SetBuffer(socket, SocketOptionName.SendBuffer, 32 /* SO_SNDBUFFORCE */);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static void SetBuffer(Socket socket, SocketOptionName option, int forceOption)
    {
        // As root, SO_*BUFFORCE passes net.core.*mem_max; otherwise the plain option is capped by it.
        Span<byte> value = stackalloc byte[4];
        BitConverter.TryWriteBytes(value, SocketBufferBytes);
        try { socket.SetRawSocketOption(1 /* SOL_SOCKET */, forceOption, value); }
        catch (SocketException) { socket.SetSocketOption(SocketOptionLevel.Socket, option, SocketBufferBytes); }
    }

    /// <summary>
    /// Receives up to <see cref="PacketBatch.Capacity"/> datagrams from one socket, waiting at most
    /// ~200 ms for the first. Packets land at offset 0 of each slot. Returns the count (0 on timeout,
    /// -1 once the socket is closed).
    /// </summary>
    public int Receive(Socket socket, PacketBatch batch)
    {
        var handle = socket.SafeHandle;
        var added = false;
        try
        {
            // Holding a reference keeps the fd from being closed (and its number reused) mid-call.
            handle.DangerousAddRef(ref added);
            return ReceiveOn((int)handle.DangerousGetHandle(), batch);
        }
        catch (ObjectDisposedException)
        {
            return -1;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    private static int ReceiveOn(int fd, PacketBatch batch)
    {
        for (var i = 0; i < batch.Capacity; i++)
        {
            batch.Iovs[i].Base = batch.SlotPointer(i);
            batch.Iovs[i].Length = (nuint)batch.SlotSize;
            ref var header = ref batch.Headers[i].Header;
            header.Name = batch.AddressPointer(i);
            header.NameLength = PacketBatch.AddressSize;
            header.Iov = &batch.Iovs[i];
            header.IovLength = 1;
            header.Control = null;
            header.ControlLength = 0;
            header.Flags = 0;
        }
        var received = Libc.recvmmsg(fd, batch.Headers, (uint)batch.Capacity, Libc.MSG_WAITFORONE, null);
        if (received < 0)
        {
            // Nothing yet (the receive timeout) or a signal: ask again. A closed socket: the loop is done.
            // Anything else is unexpected, and the receive loop is started again after it (it must not end quietly).
            var errno = Libc.LastError;
            if (errno is Libc.EAGAIN or Libc.EINTR) return 0;
            if (errno == Libc.EBADF) return -1;
            throw new IOException($"receiving on the UDP socket failed: {Libc.Describe(errno)}");
        }
        for (var i = 0; i < received; i++)
        {
            batch.Offsets[i] = 0;
            // A datagram larger than the slot was cut short: mark it empty so it is dropped as malformed.
            batch.Lengths[i] = (batch.Headers[i].Header.Flags & Libc.MSG_TRUNC) != 0 ? 0 : (int)batch.Headers[i].Length;
            batch.AddressLengths[i] = (int)batch.Headers[i].Header.NameLength;
        }
        return received;
    }

    /// <summary>Sends the given slots (packet = Offsets/Lengths, destination = Address) with as few syscalls as possible.</summary>
    public int Send(PacketBatch batch, ReadOnlySpan<int> slots)
    {
        var sent = 0;
        var start = 0;
        while (start < slots.Length)
        {
            // sendmmsg goes to one socket, so group consecutive packets by address family.
            var v6 = batch.AddressLengths[slots[start]] > 16;
            var end = start;
            while (end < slots.Length && (batch.AddressLengths[slots[end]] > 16) == v6) end++;
            var socket = v6 ? _v6 : _v4;
            if (socket is not null) sent += SendGroup(socket, batch, slots[start..end]);
            start = end;
        }
        return sent;
    }

    private static int SendGroup(Socket socket, PacketBatch batch, ReadOnlySpan<int> slots)
    {
        var handle = socket.SafeHandle;
        var added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return SendGroupOn((int)handle.DangerousGetHandle(), batch, slots);
        }
        catch (ObjectDisposedException)
        {
            return 0;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    private static int SendGroupOn(int fd, PacketBatch batch, ReadOnlySpan<int> slots)
    {
        for (var i = 0; i < slots.Length; i++)
        {
            var slot = slots[i];
            batch.Iovs[i].Base = batch.SlotPointer(slot) + batch.Offsets[slot];
            batch.Iovs[i].Length = (nuint)batch.Lengths[slot];
            ref var header = ref batch.Headers[i].Header;
            header.Name = batch.AddressPointer(slot);
            header.NameLength = (uint)batch.AddressLengths[slot];
            header.Iov = &batch.Iovs[i];
            header.IovLength = 1;
            header.Control = null;
            header.ControlLength = 0;
            header.Flags = 0;
        }
        var done = 0;
        while (done < slots.Length)
        {
            var result = Libc.sendmmsg(fd, batch.Headers + done, (uint)(slots.Length - done), 0);
            if (result <= 0)
            {
                var errno = Libc.LastError;
                if (errno == Libc.EINTR) continue;
                // A destination the kernel refuses (no route, unreachable) must not stop the rest: skip it.
                done++;
                continue;
            }
            done += result;
        }
        return done;
    }

    public bool SendTo(Endpoint endpoint, ReadOnlySpan<byte> packet)
    {
        var socket = endpoint.IsIPv4 ? _v4 : _v6;
        if (socket is null) return false;
        var handle = socket.SafeHandle;
        var added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            fixed (byte* data = packet)
            fixed (byte* address = endpoint.Sockaddr)
                return Libc.sendto((int)handle.DangerousGetHandle(), data, (nuint)packet.Length, 0, address, (uint)endpoint.Sockaddr.Length) == packet.Length;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    private readonly Lock _dontFragment = new();

    /// <summary>
    /// Sends one datagram with Don't Fragment set and no local fragmentation (IP_PMTUDISC_DO), for
    /// path MTU probes; every other datagram keeps the kernel's default (IP_PMTUDISC_WANT: DF until an
    /// ICMP says the path is smaller, then fragmented locally). The option is the socket's, so probes
    /// take turns. False if not sent, including EMSGSIZE (the kernel already knows the path is smaller).
    /// </summary>
    public bool SendDontFragment(Endpoint endpoint, ReadOnlySpan<byte> packet)
    {
        var socket = endpoint.IsIPv4 ? _v4 : _v6;
        if (socket is null) return false;
        var (level, option) = endpoint.IsIPv4 ? (0 /* IPPROTO_IP */, 10 /* IP_MTU_DISCOVER */) : (41 /* IPPROTO_IPV6 */, 23 /* IPV6_MTU_DISCOVER */);
        Span<byte> value = stackalloc byte[4];
        lock (_dontFragment)
        {
            try
            {
                BitConverter.TryWriteBytes(value, 2 /* PMTUDISC_DO */);
                socket.SetRawSocketOption(level, option, value);
                try
                {
                    return SendTo(endpoint, packet);
                }
                finally
                {
                    BitConverter.TryWriteBytes(value, 1 /* PMTUDISC_WANT */);
                    socket.SetRawSocketOption(level, option, value);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return false;
            }
        }
    }

    /// <summary>Sets SO_MARK on both sockets (policy routing; WireGuard's fwmark). 0 clears it.</summary>
    public void SetFirewallMark(uint mark)
    {
        Span<byte> value = stackalloc byte[4];
        BitConverter.TryWriteBytes(value, mark);
        foreach (var socket in Sockets) socket.SetRawSocketOption(1 /* SOL_SOCKET */, 36 /* SO_MARK */, value);
    }

    public void Dispose()
    {
        _v4.Dispose();
        _v6?.Dispose();
    }
}
