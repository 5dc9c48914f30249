using Weft.NodeAgent.Net;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Net;

/// <summary>Reading what <c>ip</c> prints about the tunnel interface (its output as iproute2 6.x prints it).</summary>
public class LinkShowTests
{
    [Fact]
    public void A_link_is_up_when_UP_is_among_its_flags_and_LOWER_UP_alone_is_not_enough()
    {
        Assert.True(LinkShow.IsUp("7: weft0: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1280 qdisc fq_codel state UNKNOWN mode DEFAULT group default qlen 500\\    link/none "));
        Assert.False(LinkShow.IsUp("7: weft0: <POINTOPOINT,MULTICAST,NOARP> mtu 1280 qdisc fq_codel state DOWN mode DEFAULT group default qlen 500\\    link/none "));
        Assert.False(LinkShow.IsUp("7: weft0: <POINTOPOINT,LOWER_UP> mtu 1280"));
        Assert.False(LinkShow.IsUp(""));
    }

    [Fact]
    public void Addresses_and_route_destinations_are_read_from_each_line_and_anything_else_is_passed_over()
    {
        var addresses = LinkShow.Addresses("""
            7: weft0    inet 100.64.0.7/32 scope global weft0\       valid_lft forever preferred_lft forever
            7: weft0    inet6 fd7a:115c:a1e0::7/128 scope global nodad \       valid_lft forever preferred_lft forever
            7: weft0    inet6 fe80::1/64 scope link \       valid_lft forever preferred_lft forever
            """);
        Assert.Equal([IpPrefix.Parse("100.64.0.7/32"), IpPrefix.Parse("fd7a:115c:a1e0::7/128"), IpPrefix.Parse("fe80::1/64")], addresses.ToHashSet());

        Assert.Equal([IpPrefix.Parse("100.64.0.0/10"), IpPrefix.Parse("198.18.40.0/24"), IpPrefix.Parse("198.18.40.7/32"), IpPrefix.Parse("0.0.0.0/0")],
            LinkShow.RouteDestinations("-4", "100.64.0.0/10 scope link \n198.18.40.0/24 proto static scope link \n198.18.40.7 scope link \ndefault scope link \n").ToHashSet());
        Assert.Equal([IpPrefix.Parse("fd7a:115c:a1e0::/48"), IpPrefix.Parse("::/0")],
            LinkShow.RouteDestinations("-6", "fd7a:115c:a1e0::/48 metric 1024 pref medium\ndefault dev weft0 metric 1024 pref medium\n").ToHashSet());
        Assert.Empty(LinkShow.RouteDestinations("-4", ""));
    }
}
