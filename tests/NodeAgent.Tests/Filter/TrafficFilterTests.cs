using Weft.Contracts.Control;
using Weft.NodeAgent.Filter;
using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.WireGuard;
using PortRange = Weft.Contracts.Control.PortRange;

namespace Weft.NodeAgent.Tests.Filter;

/// <summary>The agent's inbound filter: rules resolved against peers, and return traffic of our own flows.</summary>
public class TrafficFilterTests
{
    private const string Me = "100.64.0.1", Web = "100.64.0.2", Laptop = "100.64.0.3", Stranger = "100.64.0.9";

    private static Node Peer(string id, string address, string user = "", params string[] tags) =>
        new() { Id = id, Addresses = { address, $"fd7a:115c:a1e0::{address.Split('.')[3]}" }, User = user, Tags = { tags } };

    private static readonly Node[] Peers = [Peer("web", Web, tags: "tag:web"), Peer("laptop", Laptop, user: "alice@example.com"), Peer("other", Stranger, user: "bob@example.com")];

    private static FilterRule Rule(string[] sources, int first, int last, params int[] protocols) => new()
    {
        Sources = { sources },
        Destinations = { Me + "/32", "fd7a:115c:a1e0::1/128" },
        Ports = { new PortRange { First = (uint)first, Last = (uint)last } },
        Protocols = { protocols.Length == 0 ? [6, 17, 1, 58] : protocols },
    };

    private static bool Allows(TrafficFilter filter, byte[] packet, FlowTracker? flows = null, long now = 1000)
    {
        Assert.True(IpPacket.TryRead(packet, out var parsed));
        return filter.AllowsInbound(parsed, flows ?? new FlowTracker(), now);
    }

    [Fact]
    public void Identity_sources_resolve_to_the_peers_that_carry_them()
    {
        var filter = TrafficFilter.Compile(new PacketFilter { Rules = { Rule(["tag:web"], 443, 443, 6), Rule(["user:alice@example.com"], 22, 22, 6) } }, Peers);

        Assert.True(Allows(filter, TestPackets.Tcp4(Web, Me, 50000, 443)));
        Assert.False(Allows(filter, TestPackets.Tcp4(Web, Me, 50000, 22)));
        Assert.True(Allows(filter, TestPackets.Tcp4(Laptop, Me, 50000, 22)));
        Assert.False(Allows(filter, TestPackets.Tcp4(Stranger, Me, 50000, 22)));
        Assert.False(Allows(filter, TestPackets.Udp4(Web, Me, 50000, 443))); // tcp only
    }

    [Fact]
    public void Autogroups_wildcards_cidrs_ranges_and_protocols()
    {
        var filter = TrafficFilter.Compile(new PacketFilter
        {
            Rules =
            {
                Rule(["autogroup:member"], 8000, 8099, 6, 17),
                Rule(["autogroup:tagged"], 53, 53, 17),
                Rule(["100.64.0.9/32"], 0, 65535, 1),
                Rule(["*"], 80, 80, 6),
            },
        }, Peers);

        Assert.True(Allows(filter, TestPackets.Udp4(Laptop, Me, 1, 8050)));
        Assert.False(Allows(filter, TestPackets.Udp4(Laptop, Me, 1, 8100)));
        Assert.False(Allows(filter, TestPackets.Udp4(Web, Me, 1, 8050)));   // tagged is not a member
        Assert.True(Allows(filter, TestPackets.Udp4(Web, Me, 1, 53)));
        Assert.True(Allows(filter, TestPackets.Echo4(Stranger, Me, 8, 7)));
        // As Tailscale's client: a source that some rule admits (here on TCP and UDP 8000-8099) may ping.
        Assert.True(Allows(filter, TestPackets.Echo4(Laptop, Me, 8, 7)));
        Assert.True(Allows(filter, TestPackets.Tcp4("100.99.9.9", Me, 1, 80)));
        Assert.False(Allows(filter, TestPackets.Tcp4(Web, "100.64.0.200", 1, 80))); // not one of our addresses
        Assert.True(Allows(filter, TestPackets.Udp6("fd7a:115c:a1e0::3", "fd7a:115c:a1e0::1", 1, 8001)));
    }

    [Fact]
    public void Icmp_follows_tailscale_a_source_admitted_on_tcp_alone_may_ping_and_errors_always_pass()
    {
        // Tailscale's client (wgengine/filter/filter.go runIn4, matchIPsOnly in match.go): "if any
        // port is open to an IP, allow ICMP to it", whatever the rule's protocol; ICMP errors pass.
        var filter = TrafficFilter.Compile(new PacketFilter { Rules = { Rule(["tag:web"], 443, 443, 6) } }, Peers);

        Assert.True(Allows(filter, TestPackets.Echo4(Web, Me, 8, 1)));        // tag:web may reach us on TCP 443: it may ping
        Assert.False(Allows(filter, TestPackets.Echo4(Laptop, Me, 8, 1)));    // no rule admits the laptop at all
        Assert.False(Allows(filter, TestPackets.Udp4(Web, Me, 1, 443)));      // the rule stays TCP-only for UDP
        Assert.True(Allows(filter, TestPackets.Echo4(Laptop, Me, 3, 0)));     // destination unreachable: an error, always in
        Assert.False(Allows(filter, TestPackets.Echo4(Laptop, Me, 0, 5)));    // an echo reply to no ping of ours (stricter than Tailscale)
    }

    [Fact]
    public void A_routers_filter_opens_the_routed_subnet_and_nothing_beside_it()
    {
        var rule = Rule(["user:alice@example.com"], 0, 65535);
        rule.Destinations.Clear();
        rule.Destinations.Add("198.18.40.0/24");
        var filter = TrafficFilter.Compile(new PacketFilter { Rules = { rule } }, Peers);

        Assert.True(Allows(filter, TestPackets.Tcp4(Laptop, "198.18.40.7", 50000, 22)));
        Assert.False(Allows(filter, TestPackets.Tcp4(Laptop, "198.18.41.7", 50000, 22)));
        Assert.False(Allows(filter, TestPackets.Tcp4(Laptop, Me, 50000, 22)));  // the router itself is not the subnet
        Assert.False(Allows(filter, TestPackets.Tcp4(Web, "198.18.40.7", 50000, 22)));
    }

    [Fact]
    public void An_empty_filter_lets_in_only_the_answers_to_our_own_flows()
    {
        var filter = TrafficFilter.Compile(new PacketFilter(), Peers);
        var flows = new FlowTracker();

        Assert.False(Allows(filter, TestPackets.Udp4(Web, Me, 53, 40000), flows));
        Assert.True(IpPacket.TryRead(TestPackets.Udp4(Me, Web, 40000, 53), out var outbound));
        flows.Track(outbound, 1000);
        Assert.True(Allows(filter, TestPackets.Udp4(Web, Me, 53, 40000), flows, 1500));
        Assert.False(Allows(filter, TestPackets.Udp4(Web, Me, 53, 40001), flows, 1500)); // another port
        Assert.False(Allows(filter, TestPackets.Udp4(Laptop, Me, 53, 40000), flows, 1500)); // another peer
        Assert.False(Allows(filter, TestPackets.Udp4(Web, Me, 53, 40000), flows, 1500 + FlowTracker.OtherIdleMs + 1)); // idle too long since the last answer

        Assert.True(IpPacket.TryRead(TestPackets.Tcp4(Me, Web, 41000, 443), out var syn));
        flows.Track(syn, 1000);
        Assert.True(Allows(filter, TestPackets.Tcp4(Web, Me, 443, 41000, flags: 0x12), flows, 2000));
        Assert.False(Allows(filter, TestPackets.Tcp4(Web, Me, 443, 41001, flags: 0x12), flows, 2000));

        Assert.True(IpPacket.TryRead(TestPackets.Echo4(Me, Web, 8, 99), out var ping));
        flows.Track(ping, 1000);
        Assert.True(Allows(filter, TestPackets.Echo4(Web, Me, 0, 99), flows, 2000));
        Assert.False(Allows(filter, TestPackets.Echo4(Web, Me, 0, 98), flows, 2000));
        Assert.False(Allows(filter, TestPackets.Echo4(Web, Me, 8, 99), flows, 2000)); // a request is not an answer
    }

    [Fact]
    public void A_peer_that_gains_a_tag_gains_access_when_the_filter_is_recompiled_from_the_new_netmap()
    {
        var rules = new PacketFilter { Rules = { Rule(["tag:db-client"], 5432, 5432, 6) } };
        var before = TrafficFilter.Compile(rules, Peers);
        var retagged = Peers.Select(p => p.Id == "laptop" ? Peer("laptop", Laptop, "", "tag:db-client") : p);
        var after = TrafficFilter.Compile(rules, retagged);

        Assert.False(Allows(before, TestPackets.Tcp4(Laptop, Me, 1, 5432)));
        Assert.True(Allows(after, TestPackets.Tcp4(Laptop, Me, 1, 5432)));
    }

    [Fact]
    public void Malformed_packets_do_not_parse()
    {
        Assert.False(IpPacket.TryRead([], out _));
        Assert.False(IpPacket.TryRead([0x45, 0, 0], out _));
        Assert.False(IpPacket.TryRead(new byte[30].Select((_, i) => i == 0 ? (byte)0x60 : (byte)0).ToArray(), out _));
        Assert.False(IpPacket.TryRead([0x20, 1, 2, 3], out _));
    }
}

/// <summary>The filter on the real packet path: two engines over UDP, in-memory TUNs.</summary>
public sealed class FilteredEngineTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private readonly EngineNode _server;
    private readonly EngineNode _client;

    public FilteredEngineTests()
    {
        _server = new EngineNode(Sys, "server");
        _client = new EngineNode(Sys, "client");
        _server.Trust(_client, "100.64.0.2/32");
        _client.Trust(_server, "100.64.0.1/32");
        // The server accepts TCP 22 and ICMP from anyone; nothing else.
        _server.Device.Filter = TrafficFilter.Compile(new PacketFilter
        {
            Rules =
            {
                new FilterRule { Sources = { "*" }, Destinations = { "100.64.0.1/32" }, Ports = { new Contracts.Control.PortRange { First = 22, Last = 22 } }, Protocols = { 6 } },
                new FilterRule { Sources = { "*" }, Destinations = { "100.64.0.1/32" }, Ports = { new Contracts.Control.PortRange { First = 0, Last = 65535 } }, Protocols = { 1 } },
            },
        }, []);
    }

    [Fact]
    public void Allowed_traffic_reaches_the_tun_and_denied_traffic_is_dropped_and_counted()
    {
        var ssh = TestPackets.Tcp4("100.64.0.2", "100.64.0.1", 50000, 22);
        _client.Tun.Inject(ssh);
        Assert.Equal(ssh, _server.Receive());

        var ping = TestPackets.Echo4("100.64.0.2", "100.64.0.1", 8, 5);
        _client.Tun.Inject(ping);
        Assert.Equal(ping, _server.Receive());

        _client.Tun.Inject(TestPackets.Tcp4("100.64.0.2", "100.64.0.1", 50000, 80));
        _client.Tun.Inject(TestPackets.Udp4("100.64.0.2", "100.64.0.1", 50000, 22));
        var marker = TestPackets.Tcp4("100.64.0.2", "100.64.0.1", 50001, 22);
        _client.Tun.Inject(marker);
        Assert.Equal(marker, _server.Receive()); // the denied ones never arrived before it
        Assert.Equal(2, _server.Device.Counters[DropReason.FilterDenied]);
    }

    [Fact]
    public void Return_traffic_of_flows_the_device_opened_comes_back_in()
    {
        // The server opens flows to the client; the answers are not allowed by any rule, but are answers.
        var udpOut = TestPackets.Udp4("100.64.0.1", "100.64.0.2", 40000, 53);
        _server.Tun.Inject(udpOut);
        Assert.Equal(udpOut, _client.Receive());
        var udpBack = TestPackets.Udp4("100.64.0.2", "100.64.0.1", 53, 40000);
        _client.Tun.Inject(udpBack);
        Assert.Equal(udpBack, _server.Receive());

        var synOut = TestPackets.Tcp4("100.64.0.1", "100.64.0.2", 41000, 443);
        _server.Tun.Inject(synOut);
        Assert.Equal(synOut, _client.Receive());
        var synAck = TestPackets.Tcp4("100.64.0.2", "100.64.0.1", 443, 41000, flags: 0x12);
        _client.Tun.Inject(synAck);
        Assert.Equal(synAck, _server.Receive());

        // An unsolicited UDP packet from the same peer is still dropped.
        _client.Tun.Inject(TestPackets.Udp4("100.64.0.2", "100.64.0.1", 53, 40001));
        var marker = TestPackets.Echo4("100.64.0.2", "100.64.0.1", 8, 1);
        _client.Tun.Inject(marker);
        Assert.Equal(marker, _server.Receive());
        Assert.Equal(1, _server.Device.Counters[DropReason.FilterDenied]);
    }

    public new void Dispose()
    {
        _server.Dispose();
        _client.Dispose();
        base.Dispose();
    }
}
