using System.Net;
using Weft.NodeAgent.Dns;

namespace Weft.NodeAgent.Tests.Dns;

/// <summary>Building the name table from a netmap: reverse names, and the inputs it refuses to guess about.</summary>
public class DnsNameTableTests
{
    private static DnsHost Host(string name, params string[] addresses) => new(name, [.. addresses.Select(IPAddress.Parse)]);

    [Theory]
    [InlineData("100.64.0.2", "2.0.64.100.in-addr.arpa")]
    [InlineData("::ffff:100.64.0.2", "2.0.64.100.in-addr.arpa")] // IPv4-mapped counts as IPv4
    [InlineData("fd7a:115c:a1e0::6440:2", "2.0.0.0.0.4.4.6.0.0.0.0.0.0.0.0.0.0.0.0.0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa")]
    public void Reverse_names_are_in_addr_arpa_octets_and_ip6_arpa_nibbles(string address, string reverse) =>
        Assert.Equal(reverse, DnsNameTable.ReverseName(IPAddress.Parse(address)));

    [Fact]
    public void The_tailnet_reverse_zones_cover_100_64_0_0_slash_10_and_the_ipv6_prefix()
    {
        Assert.Equal(65, DnsNameTable.TailnetReverseZones.Count);
        Assert.Contains("64.100.in-addr.arpa", DnsNameTable.TailnetReverseZones);
        Assert.Contains("127.100.in-addr.arpa", DnsNameTable.TailnetReverseZones);
        Assert.DoesNotContain("128.100.in-addr.arpa", DnsNameTable.TailnetReverseZones);
        Assert.Contains("0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa", DnsNameTable.TailnetReverseZones);
    }

    [Fact]
    public void Zones_are_kept_lower_case_without_the_trailing_dot()
    {
        var table = new DnsNameTable([Host("web.acme.weft.internal", "100.64.0.2")], ["Acme.Weft.Internal.", "acme.weft.internal"]);

        Assert.Equal(["acme.weft.internal"], table.Zones);
        Assert.Equal(1, table.HostCount);
    }

    [Fact]
    public void A_device_outside_every_zone_is_refused() =>
        Assert.Contains("inside none of the zones", Assert.Throws<ArgumentException>(() =>
            new DnsNameTable([Host("web.other.weft.internal", "100.64.0.2")], ["acme.weft.internal"])).Message);

    [Fact]
    public void A_name_given_twice_is_refused() =>
        Assert.Contains("appears twice", Assert.Throws<ArgumentException>(() =>
            new DnsNameTable([Host("web.acme.weft.internal", "100.64.0.2"), Host("WEB.acme.weft.internal.", "100.64.0.3")], ["acme.weft.internal"])).Message);

    [Fact]
    public void An_address_on_two_devices_is_refused() =>
        Assert.Contains("belongs to both", Assert.Throws<ArgumentException>(() =>
            new DnsNameTable([Host("web.acme.weft.internal", "100.64.0.2"), Host("db.acme.weft.internal", "100.64.0.2")], ["acme.weft.internal"])).Message);

    [Theory]
    [InlineData("")]
    [InlineData(".")]
    [InlineData("web..acme.weft.internal")]
    [InlineData("café.acme.weft.internal")]
    [InlineData("has space.acme.weft.internal")]
    public void Names_that_are_not_valid_ascii_dns_names_are_refused(string name) =>
        Assert.Throws<ArgumentException>(() => new DnsNameTable([Host(name, "100.64.0.2")], ["acme.weft.internal"]));

    [Fact]
    public void Labels_over_63_characters_and_names_over_255_bytes_are_refused()
    {
        var longLabel = new string('a', 64) + ".acme.weft.internal";
        var longName = string.Join('.', Enumerable.Repeat(new string('a', 60), 4)) + ".acme.weft.internal";

        Assert.Contains("label of 64", Assert.Throws<ArgumentException>(() => new DnsNameTable([Host(longLabel)], ["acme.weft.internal"])).Message);
        Assert.Contains("at most 255", Assert.Throws<ArgumentException>(() => new DnsNameTable([Host(longName)], ["acme.weft.internal"])).Message);
    }
}
