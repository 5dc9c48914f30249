using System.Net;

namespace Weft.NodeAgent.Agent;

// The DataPlane actor's protocol (local only).

/// <summary>Finds a peer (or this device) by name, FQDN or tailnet address, for <c>weft-agent ping</c>. Replies <see cref="PeerResolved"/> or <see cref="PeerNotFound"/>.</summary>
public sealed record ResolvePeer(string Target, bool PreferIPv6 = false);

/// <summary>The peer's name and the addresses a ping goes between (this device's address of the same family as the target's).</summary>
public sealed record PeerResolved(string Name, IPAddress Address, IPAddress Source);

public sealed record PeerNotFound(string Reason);

/// <summary>Asks what the data plane routes through the tunnel; replies <see cref="RoutingStatus"/>.</summary>
public sealed class GetRoutingStatus
{
    public static readonly GetRoutingStatus Instance = new();
}

/// <summary>
/// The exit node in use (its name; null when none is chosen), why a chosen one carries no traffic
/// (not in the netmap, or not an approved exit node), and the routes installed into the tunnel.
/// </summary>
public sealed record RoutingStatus(string? ExitNode, string? ExitNodeProblem, IReadOnlyList<string> Routes);

/// <summary>
/// How this device uses its peers' routes (<c>--accept-routes</c>, <c>--exit-node</c>), changed at run
/// time by <c>up</c> and <c>set</c>: the data plane applies its netmap again under them.
/// </summary>
public sealed record RoutingPrefs(bool AcceptRoutes, string? ExitNode);
