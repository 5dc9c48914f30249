using Weft.Contracts.Control;

namespace Weft.NodeAgent.Tunnels;

/// <summary>
/// Which peer carries each subnet route. Several routers may serve one subnet (for high
/// availability); WireGuard sends a prefix to one peer only, so one is chosen, as Tailscale's
/// primary route: an online router first, then the lowest device id. When it goes offline the netmap
/// says so, and the next election moves the route to another. The same on every device, so the
/// routers' filters see their traffic from everyone alike.
/// </summary>
public sealed class RouteCarriers
{
    private readonly Dictionary<string, string> _carrier;

    private RouteCarriers(Dictionary<string, string> carrier) => _carrier = carrier;

    /// <summary>This device does not accept routes (<c>--accept-routes</c> off): no peer carries any.</summary>
    public static readonly RouteCarriers None = new([]);

    /// <param name="now">With it, a peer whose key's time has passed carries nothing either (<see cref="MeshPeer.HasLapsed"/>).</param>
    public static RouteCarriers Elect(IEnumerable<Node> peers, DateTimeOffset? now = null)
    {
        var carrier = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var node in peers.Where(p => !MeshPeer.HasLapsed(p, now)).OrderBy(p => p.Online ? 0 : 1).ThenBy(p => p.Id, StringComparer.Ordinal))
            foreach (var route in node.Routes)
                carrier.TryAdd(route, node.Id);
        return new RouteCarriers(carrier);
    }

    /// <summary>The routes some peer carries (what goes into the route table).</summary>
    public IEnumerable<string> Routes => _carrier.Keys;

    public bool Carries(Node node, string route) => _carrier.TryGetValue(route, out var id) && id == node.Id;

    /// <summary>The peer that carries <paramref name="route"/>, if any.</summary>
    public string? CarrierOf(string route) => _carrier.GetValueOrDefault(route);
}
