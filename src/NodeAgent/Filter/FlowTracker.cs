namespace Weft.NodeAgent.Filter;

/// <summary>
/// Flows this device opened, so that their return traffic is let in whatever the filter says
/// (connection tracking, as Tailscale does). A fixed table with no allocation on the packet path:
/// open addressing over a short probe window, the oldest entry in the window giving way when full,
/// and entries expiring after a quiet period.
/// </summary>
public sealed class FlowTracker
{
    public const int DefaultCapacity = 8192;
    private const int ProbeWindow = 8;
    private const int LockStripes = 64;
    public static readonly long TcpIdleMs = (long)TimeSpan.FromMinutes(10).TotalMilliseconds;
    public static readonly long OtherIdleMs = (long)TimeSpan.FromMinutes(2).TotalMilliseconds;

    private struct Flow
    {
        public UInt128 Local, Remote;
        public int LocalPort, RemotePort;
        public byte Protocol;
        public long LastSeenMs;
    }

    private readonly Flow[] _flows;
    private readonly object[] _locks = Enumerable.Range(0, LockStripes).Select(_ => new object()).ToArray();

    public FlowTracker(int capacity = DefaultCapacity) => _flows = new Flow[Math.Max(1, capacity / ProbeWindow) * ProbeWindow];

    /// <summary>An outbound packet: remember (or refresh) its flow.</summary>
    public void Track(in IpPacket packet, long nowMs)
    {
        // Only flows that can be answered: ports, or ICMP echo requests.
        if (packet.SourcePort == IpPacket.NoPort || packet.Protocol is 1 or 58 && !packet.IsEchoRequest) return;
        var start = Bucket(packet.Protocol, packet.Source, packet.Destination, packet.SourcePort, packet.DestinationPort);
        lock (_locks[start / ProbeWindow % LockStripes])
        {
            var victim = start;
            for (var i = 0; i < ProbeWindow; i++)
            {
                var index = (start + i) % _flows.Length;
                ref var flow = ref _flows[index];
                if (flow.LastSeenMs != 0 && flow.Protocol == packet.Protocol && flow.Local == packet.Source && flow.Remote == packet.Destination
                    && flow.LocalPort == packet.SourcePort && flow.RemotePort == packet.DestinationPort)
                {
                    flow.LastSeenMs = nowMs;
                    return;
                }
                if (flow.LastSeenMs < _flows[victim].LastSeenMs) victim = index;
            }
            _flows[victim] = new Flow
            {
                Local = packet.Source, Remote = packet.Destination, LocalPort = packet.SourcePort, RemotePort = packet.DestinationPort,
                Protocol = packet.Protocol, LastSeenMs = nowMs,
            };
        }
    }

    /// <summary>Is this inbound packet the answer to a flow we opened (and still live)?</summary>
    public bool IsReturnTraffic(in IpPacket packet, long nowMs)
    {
        if (packet.DestinationPort == IpPacket.NoPort || packet.Protocol is 1 or 58 && !packet.IsEchoReply) return false;
        var start = Bucket(packet.Protocol, packet.Destination, packet.Source, packet.DestinationPort, packet.SourcePort);
        var idle = packet.Protocol == 6 ? TcpIdleMs : OtherIdleMs;
        lock (_locks[start / ProbeWindow % LockStripes])
        {
            for (var i = 0; i < ProbeWindow; i++)
            {
                ref var flow = ref _flows[(start + i) % _flows.Length];
                if (flow.LastSeenMs != 0 && nowMs - flow.LastSeenMs <= idle && flow.Protocol == packet.Protocol
                    && flow.Local == packet.Destination && flow.Remote == packet.Source
                    && flow.LocalPort == packet.DestinationPort && flow.RemotePort == packet.SourcePort)
                {
                    flow.LastSeenMs = nowMs;
                    return true;
                }
            }
        }
        return false;
    }

    private int Bucket(byte protocol, UInt128 local, UInt128 remote, int localPort, int remotePort)
    {
        var hash = HashCode.Combine(protocol, local, remote, localPort, remotePort);
        // Windows do not overlap, so one lock covers a whole window.
        var buckets = _flows.Length / ProbeWindow;
        return (int)((uint)hash % (uint)buckets) * ProbeWindow;
    }
}
