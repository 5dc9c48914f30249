using System.Collections.Immutable;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tunnels;

/// <summary>
/// A peer as the data plane needs it from the netmap: which device (its id survives key rotation),
/// its current node key, the addresses it may send from and be reached at, and the underlay
/// endpoints it advertises.
/// </summary>
public sealed record MeshPeer(string Id, Curve25519PublicKey Key, ImmutableArray<IpPrefix> AllowedIps, ImmutableArray<Endpoint> Endpoints)
{
    /// <summary>The peer's home relay path, where its first packets go until a direct path is proven; null without relays.</summary>
    public Endpoint? Relay { get; init; }

    /// <summary>The peer's device name, for the logs.</summary>
    public string Name { get; init; } = "";

    /// <summary>
    /// The peer a netmap node describes, or null when it cannot carry traffic (no valid node key, or
    /// expired: marked so, or its key's time passed by <paramref name="now"/>). Its subnet routes are
    /// in its allowed IPs when it carries them for this device (<paramref name="routes"/>; null takes
    /// every route the node lists); the exit routes only when it is the exit node this device uses.
    /// </summary>
    public static MeshPeer? FromNode(Node node, RouteCarriers? routes = null, bool asExitNode = false, DateTimeOffset? now = null)
    {
        if (HasLapsed(node, now) || node.NodeKey.Length != 32) return null;
        var key = new Curve25519PublicKey(node.NodeKey.Span);
        var allowed = ImmutableArray.CreateBuilder<IpPrefix>();
        foreach (var text in node.AllowedIps.Count > 0 ? node.AllowedIps : node.Addresses)
        {
            if (routes is not null && node.Routes.Contains(text) && !routes.Carries(node, text)) continue;
            if (IpPrefix.TryParse(text, out var prefix)) allowed.Add(prefix);
        }
        if (asExitNode) allowed.AddRange(ExitRoutes);
        var endpoints = ImmutableArray.CreateBuilder<Endpoint>();
        foreach (var text in node.Endpoints)
        {
            if (System.Net.IPEndPoint.TryParse(text, out var parsed) && parsed.Port != 0) endpoints.Add(new Endpoint(parsed));
        }
        return new MeshPeer(node.Id, key, allowed.ToImmutable(), endpoints.ToImmutable()) { Name = node.Name };
    }

    /// <summary>
    /// Whether the node's key is expired: the coordinator marked it so, or (with <paramref name="now"/>) its
    /// expiry has passed. The coordinator marks a lapsed key within its sweep, but only an agent it reaches
    /// hears so: one running on a cached netmap while no coordinator answers must not keep accepting a key
    /// past its end (Tailscale's agent expires peers itself too).
    /// </summary>
    public static bool HasLapsed(Node node, DateTimeOffset? now) =>
        node.Expired || (now is { } at && node.KeyExpiry is { } expiry && expiry.ToDateTimeOffset() <= at);

    /// <summary>Every IPv4 and every IPv6 address: what an exit node carries.</summary>
    public static readonly ImmutableArray<IpPrefix> ExitRoutes = [IpPrefix.Parse("0.0.0.0/0"), IpPrefix.Parse("::/0")];

    /// <summary>
    /// Where to send: the endpoint in use while the peer still advertises it (it may have been
    /// learned by roaming), else the first IPv4 endpoint it advertises, else its first one. A peer
    /// that moved stops advertising its old address, so its new one takes over. Choosing among
    /// several by probing them (disco) comes with NAT traversal.
    /// </summary>
    public static Endpoint? ChooseEndpoint(Endpoint? current, ImmutableArray<Endpoint> advertised)
    {
        if (current is not null && (advertised.IsEmpty || advertised.Contains(current))) return current;
        foreach (var endpoint in advertised) if (endpoint.IsIPv4) return endpoint;
        return advertised.IsEmpty ? null : advertised[0];
    }
}
