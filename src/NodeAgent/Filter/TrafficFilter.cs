using System.Net;
using System.Net.Sockets;
using Weft.Contracts.Control;

namespace Weft.NodeAgent.Filter;

/// <summary>
/// The agent's inbound packet filter: the coordinator's rules with their identities resolved to the
/// current peers' addresses. Traffic arriving through the tunnel passes if a rule allows it or it
/// answers a flow this device opened; everything else is dropped (and counted by the engine).
/// Immutable: a new netmap compiles a new filter, swapped in atomically. No allocation per packet.
/// </summary>
public sealed class TrafficFilter
{
    private readonly struct Prefix(UInt128 network, UInt128 mask)
    {
        public bool Contains(UInt128 address) => (address & mask) == network;

        public static Prefix From(IPNetwork network)
        {
            var bits = network.BaseAddress.AddressFamily == AddressFamily.InterNetwork ? network.PrefixLength + 96 : network.PrefixLength;
            var mask = bits == 0 ? UInt128.Zero : UInt128.MaxValue << (128 - bits);
            return new Prefix(ToUInt128(network.BaseAddress) & mask, mask);
        }
    }

    private sealed class Rule
    {
        public required bool AnySource { get; init; }
        public required Prefix[] Sources { get; init; }
        public required Prefix[] Destinations { get; init; }
        public required (int First, int Last)[] Ports { get; init; }
        public required ulong[] Protocols { get; init; }

        /// <summary>Does the rule admit the packet's source to its destination, whatever the protocol and port?</summary>
        public bool AllowsAddresses(in IpPacket packet) =>
            AnyContains(Destinations, packet.Destination) && (AnySource || AnyContains(Sources, packet.Source));

        public bool Allows(in IpPacket packet)
        {
            if ((Protocols[packet.Protocol >> 6] & (1UL << (packet.Protocol & 63))) == 0) return false;
            if (!AllowsAddresses(packet)) return false;
            if (packet.Protocol is 6 or 17 or 132)
            {
                foreach (var (first, last) in Ports)
                {
                    // A non-first fragment carries no port: only a rule for every port lets it through.
                    if (packet.DestinationPort == IpPacket.NoPort ? first == 0 && last == 65535 : packet.DestinationPort >= first && packet.DestinationPort <= last)
                        return true;
                }
                return false;
            }
            return true;
        }

        private static bool AnyContains(Prefix[] prefixes, UInt128 address)
        {
            foreach (var prefix in prefixes)
                if (prefix.Contains(address)) return true;
            return false;
        }
    }

    private readonly Rule[] _rules;

    private TrafficFilter(Rule[] rules) => _rules = rules;

    /// <summary>Lets nothing in but return traffic (an empty filter).</summary>
    public static readonly TrafficFilter DenyAll = new([]);

    public int RuleCount => _rules.Length;

    /// <summary>Resolves <paramref name="filter"/> against <paramref name="peers"/> (their tags, users and addresses).</summary>
    public static TrafficFilter Compile(PacketFilter filter, IEnumerable<Node> peers)
    {
        var peerList = peers.ToList();
        var rules = new List<Rule>();
        foreach (var rule in filter.Rules)
        {
            var any = false;
            var sources = new List<Prefix>();
            foreach (var selector in rule.Sources)
            {
                if (selector == "*")
                {
                    any = true;
                    continue;
                }
                if (IPNetwork.TryParse(selector, out var network))
                {
                    sources.Add(Prefix.From(network));
                    continue;
                }
                foreach (var peer in peerList.Where(p => Matches(selector, p)))
                    foreach (var address in peer.Addresses)
                        if (IPAddress.TryParse(address, out var ip)) sources.Add(Prefix.From(new IPNetwork(ip, ip.AddressFamily == AddressFamily.InterNetwork ? 32 : 128)));
            }
            var destinations = rule.Destinations.Select(d => IPNetwork.TryParse(d, out var n) ? Prefix.From(n) : (Prefix?)null)
                .Where(p => p is not null).Select(p => p!.Value).ToArray();
            var protocols = new ulong[4];
            foreach (var protocol in rule.Protocols.Where(p => p is >= 0 and <= 255)) protocols[protocol >> 6] |= 1UL << (protocol & 63);
            if (!any && sources.Count == 0) continue; // nobody it names is a peer right now
            rules.Add(new Rule
            {
                AnySource = any,
                Sources = [.. sources],
                Destinations = destinations,
                Ports = [.. rule.Ports.Select(p => ((int)p.First, (int)Math.Min(p.Last, 65535)))],
                Protocols = protocols,
            });
        }
        return new TrafficFilter([.. rules]);
    }

    private static bool Matches(string selector, Node peer)
    {
        var tagged = peer.Tags.Count > 0;
        return selector switch
        {
            "autogroup:member" => !tagged && peer.User.Length > 0,
            "autogroup:tagged" => tagged,
            _ when selector.StartsWith("tag:", StringComparison.Ordinal) => peer.Tags.Contains(selector),
            _ when selector.StartsWith("user:", StringComparison.Ordinal) => !tagged && string.Equals(peer.User, selector[5..], StringComparison.OrdinalIgnoreCase),
            _ => false,
        };
    }

    /// <summary>
    /// May this inbound packet (already authenticated by WireGuard) reach the device? ICMP follows
    /// Tailscale's client (wgengine/filter/filter.go, runIn4 and runIn6, with matchIPsOnly in
    /// match.go): ICMP errors always pass, and any other ICMP (a ping) passes when some rule admits
    /// its source to its destination on any protocol and port ("if any port is open to an IP, allow
    /// ICMP to it"), so a TCP-only rule also lets its sources ping. One difference, stricter: an
    /// echo reply passes only as the answer to a ping this device sent (Tailscale lets every reply in).
    /// </summary>
    public bool AllowsInbound(in IpPacket packet, FlowTracker flows, long nowMs)
    {
        if (packet.IsIcmp)
        {
            if (packet.IsIcmpError) return true;
            if (packet.IsEchoReply) return flows.IsReturnTraffic(packet, nowMs);
            foreach (var rule in _rules)
                if (rule.AllowsAddresses(packet)) return true;
            return false;
        }
        foreach (var rule in _rules)
            if (rule.Allows(packet)) return true;
        return flows.IsReturnTraffic(packet, nowMs);
    }

    private static UInt128 ToUInt128(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            address.TryWriteBytes(bytes[12..], out _);
            return IpPacket.MapIpv4(System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(bytes[12..]));
        }
        address.TryWriteBytes(bytes, out _);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(bytes);
    }
}
