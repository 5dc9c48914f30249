using Google.Protobuf;
using Weft.Contracts.Control;
using Weft.NodeAgent.Tunnels;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Tunnels;

/// <summary>Which peer carries a subnet route, and what goes into each peer's allowed IPs.</summary>
public class RouteCarriersTests
{
    private static Node Router(string id, bool online, params string[] routes)
    {
        var node = new Node
        {
            Id = id, Online = online, NodeKey = ByteString.CopyFrom(new byte[32]),
            Addresses = { $"100.64.0.{id.Length}", $"fd7a:115c:a1e0::{id.Length}" },
            AllowedIps = { $"100.64.0.{id.Length}/32", $"fd7a:115c:a1e0::{id.Length}/128" },
        };
        node.AllowedIps.Add(routes);
        node.Routes.Add(routes);
        return node;
    }

    private static string[] Allowed(MeshPeer peer) => [.. peer.AllowedIps.Select(p => p.ToString())];

    [Fact]
    public void Of_two_routers_for_one_subnet_the_online_one_with_the_lowest_id_carries_it_and_the_other_takes_over_when_it_goes()
    {
        var a = Router("dev-a", online: true, "198.18.40.0/24");
        var b = Router("dev-b", online: true, "198.18.40.0/24", "198.18.41.0/24");

        var carriers = RouteCarriers.Elect([b, a]);
        Assert.Equal("dev-a", carriers.CarrierOf("198.18.40.0/24"));
        Assert.Equal("dev-b", carriers.CarrierOf("198.18.41.0/24"));
        Assert.Contains("198.18.40.0/24", Allowed(MeshPeer.FromNode(a, carriers)!));
        Assert.DoesNotContain("198.18.40.0/24", Allowed(MeshPeer.FromNode(b, carriers)!)); // one peer per prefix, as WireGuard needs
        Assert.Contains("198.18.41.0/24", Allowed(MeshPeer.FromNode(b, carriers)!));

        a.Online = false;
        Assert.Equal("dev-b", RouteCarriers.Elect([a, b]).CarrierOf("198.18.40.0/24"));
        // Both offline: still carried (the lowest id), so that traffic waits for one rather than leaking elsewhere.
        b.Online = false;
        Assert.Equal("dev-a", RouteCarriers.Elect([a, b]).CarrierOf("198.18.40.0/24"));
    }

    [Fact]
    public void Without_accept_routes_no_peer_carries_a_route_and_its_allowed_ips_are_its_addresses()
    {
        var router = Router("dev-a", online: true, "198.18.40.0/24");

        Assert.Empty(RouteCarriers.None.Routes);
        Assert.Equal(["100.64.0.5/32", "fd7a:115c:a1e0::5/128"], Allowed(MeshPeer.FromNode(router, RouteCarriers.None)!));
        Assert.Equal(["100.64.0.5/32", "fd7a:115c:a1e0::5/128", "0.0.0.0/0", "::/0"], Allowed(MeshPeer.FromNode(router, RouteCarriers.None, asExitNode: true)!));
    }
}
