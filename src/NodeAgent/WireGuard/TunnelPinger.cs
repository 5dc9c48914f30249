using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Weft.NodeAgent.Net.Offload;

namespace Weft.NodeAgent.WireGuard;

/// <summary>One answered <see cref="TunnelPinger"/> ping: how long it took and which underlay endpoint the answer came over.</summary>
public sealed record TunnelPingReply(TimeSpan RoundTrip, string PeerKey, string? Via);

/// <summary>
/// <c>weft-agent ping</c>: ICMP echo requests sent from the device's own tailnet address straight
/// into the engine (as if read from the TUN), and their replies caught on the inbound path before
/// the TUN, so that the answer proves the tunnel itself works and tells which path it took. The
/// replies are recognised by an identifier no local <c>ping</c> process uses (one per agent).
/// </summary>
public sealed class TunnelPinger
{
    private const int PayloadLength = 16;
    private readonly ConcurrentDictionary<ushort, Waiting> _waiting = new();
    private int _sequence;

    public ushort Identifier { get; } = (ushort)Random.Shared.Next(0x8000, 0x10000);

    /// <summary>Sends one echo request and waits for its reply; null on timeout or when no peer routes <paramref name="target"/>.</summary>
    public async Task<TunnelPingReply?> PingAsync(WireGuardDevice device, IPAddress source, IPAddress target, TimeSpan timeout)
    {
        if (source.AddressFamily != target.AddressFamily) throw new ArgumentException("source and target must be the same address family");
        var sequence = (ushort)Interlocked.Increment(ref _sequence);
        var waiting = new Waiting(Stopwatch.GetTimestamp());
        _waiting[sequence] = waiting;
        try
        {
            if (!device.SendLocalPacket(EchoRequest(source, target, Identifier, sequence))) return null;
            var finished = await Task.WhenAny(waiting.Reply.Task, Task.Delay(timeout));
            return finished == waiting.Reply.Task ? waiting.Reply.Task.Result : null;
        }
        finally
        {
            _waiting.TryRemove(sequence, out _);
        }
    }

    /// <summary>
    /// On the packet path: true if <paramref name="packet"/> is the answer to one of our pings (it
    /// is then consumed, not written to the TUN). Cheap for every other packet: two byte compares.
    /// </summary>
    internal bool TryTakeReply(ReadOnlySpan<byte> packet, Peer peer)
    {
        int icmp;
        if (packet.Length >= 28 && packet[0] >> 4 == 4 && packet[9] == 1)
        {
            icmp = (packet[0] & 0x0f) * 4;
            if (packet.Length < icmp + 8 || packet[icmp] != 0) return false;
        }
        else if (packet.Length >= 48 && packet[0] >> 4 == 6 && packet[6] == 58)
        {
            icmp = 40;
            if (packet[icmp] != 129) return false;
        }
        else
        {
            return false;
        }
        if (BinaryPrimitives.ReadUInt16BigEndian(packet[(icmp + 4)..]) != Identifier) return false;
        var sequence = BinaryPrimitives.ReadUInt16BigEndian(packet[(icmp + 6)..]);
        if (_waiting.TryRemove(sequence, out var waiting))
            waiting.Reply.TrySetResult(new TunnelPingReply(Stopwatch.GetElapsedTime(waiting.SentAt), peer.PublicKey.ToBase64(), peer.Endpoint?.ToString()));
        return true;
    }

    /// <summary>An ICMP (IPv4) or ICMPv6 echo request with correct checksums.</summary>
    public static byte[] EchoRequest(IPAddress source, IPAddress target, ushort identifier, ushort sequence)
    {
        var v6 = source.AddressFamily == AddressFamily.InterNetworkV6;
        var header = v6 ? 40 : 20;
        var packet = new byte[header + 8 + PayloadLength];
        var icmp = packet.AsSpan(header);
        icmp[0] = (byte)(v6 ? 128 : 8);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[4..], identifier);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[6..], sequence);
        BinaryPrimitives.WriteInt64BigEndian(icmp[8..], DateTime.UtcNow.Ticks);
        if (v6)
        {
            packet[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)icmp.Length);
            packet[6] = 58;
            packet[7] = 64;
            source.TryWriteBytes(packet.AsSpan(8), out _);
            target.TryWriteBytes(packet.AsSpan(24), out _);
            var sum = InternetChecksum.PseudoHeader(packet.AsSpan(8, 16), packet.AsSpan(24, 16), 58, icmp.Length);
            BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Complete(InternetChecksum.Add(icmp, sum)));
        }
        else
        {
            packet[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
            packet[8] = 64;
            packet[9] = 1;
            source.TryWriteBytes(packet.AsSpan(12), out _);
            target.TryWriteBytes(packet.AsSpan(16), out _);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), InternetChecksum.Complete(InternetChecksum.Add(packet.AsSpan(0, 20))));
            BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Complete(InternetChecksum.Add(icmp)));
        }
        return packet;
    }

    private sealed record Waiting(long SentAt)
    {
        public TaskCompletionSource<TunnelPingReply> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
