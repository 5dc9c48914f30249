using System.Collections.Immutable;
using System.Net;
using Weft.Contracts.Keys;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Paths;

// The messages of the PathManager and its children (local only, never serialized).

/// <summary>A peer as path finding needs it from the netmap.</summary>
public sealed record PathPeer(string Id, string Name, Curve25519PublicKey NodeKey, Curve25519PublicKey? DiscoKey, ImmutableArray<Endpoint> Endpoints, int HomeRegion);

public static class PathPeers
{
    /// <summary>The same peer as far as path finding goes (a record's own equality compares the endpoint arrays by reference).</summary>
    public static bool Same(PathPeer a, PathPeer b) =>
        a.Id == b.Id && a.Name == b.Name && a.NodeKey == b.NodeKey && a.DiscoKey == b.DiscoKey && a.HomeRegion == b.HomeRegion && a.Endpoints.SequenceEqual(b.Endpoints);
}

/// <summary>A PathFinder restarted after a failure: it asks its PathManager for its peer as the netmap has it now.</summary>
public sealed record PathFinderRestarted(string PeerId);

/// <summary>The EndpointDiscovery (re)started: the PathManager hands it the relay map and the home region it knows.</summary>
public sealed class NetcheckStarted
{
    public static readonly NetcheckStarted Instance = new();
}

/// <summary>The PathManager's reminder to itself to start endpoint discovery again, a moment after it stopped.</summary>
public sealed class RestartDiscovery
{
    public static readonly RestartDiscovery Instance = new();
}

/// <summary>A RelayClient (re)started: the PathManager answers with the current credentials and whether its region is home.</summary>
public sealed record RelayClientStarted(int RegionId);

/// <summary>The home region this device had before (PathManager → EndpointDiscovery), so that a restart keeps it sticky.</summary>
public sealed record HomeHint(int RegionId);

/// <summary>A disco packet from the UDP socket or a relay (<paramref name="Source"/> is then a relay endpoint naming the sender's node key).</summary>
public sealed record DiscoArrived(byte[] Packet, Endpoint Source);

/// <summary>A STUN response on the tunnel's socket, with the engine clock's time of arrival.</summary>
public sealed record StunArrived(byte[] Packet, Endpoint Source, long AtMs);

/// <summary>Runs a netcheck now and replies <see cref="NetcheckReport"/> (<c>weft-agent netcheck</c>).</summary>
public sealed class GetNetcheck
{
    public static readonly GetNetcheck Instance = new();
}

/// <summary>One region's STUN result: its round trip (null: no answer) and what it saw of us.</summary>
public sealed record RegionProbe(int RegionId, string Code, double? LatencyMs, string? MappedAddress);

/// <summary>
/// What a netcheck found: whether UDP works at all, whether the NAT maps us to one address for every
/// destination (easy) or a different one per destination (hard, "varies"), the addresses STUN saw,
/// per-region latency, and the home region chosen.
/// </summary>
public sealed record NetcheckReport(
    bool Udp, bool? MappingVariesByDestination, IReadOnlyList<string> StunAddresses, IReadOnlyList<RegionProbe> Regions,
    int HomeRegion, IReadOnlyList<string> LocalEndpoints, DateTimeOffset At)
{
    public string NatKind => !Udp ? "udp-blocked" : MappingVariesByDestination switch { true => "hard", false => "easy", null => "unknown" };
}

/// <summary>Asks for every peer's path; replies <see cref="PathStatusReply"/>.</summary>
public sealed class GetPathStatus
{
    public static readonly GetPathStatus Instance = new();
}

/// <summary>
/// One peer's path: "direct" (to <paramref name="Endpoint"/>, trusted by a recent pong), "relay"
/// (through region <paramref name="RelayRegion"/>) or "none"; <paramref name="Mtu"/> is the largest
/// inner packet it carries (the configured MTU unless probing proved more).
/// </summary>
public sealed record PathStatus(string NodeKeyHex, string Kind, string? Endpoint, int RelayRegion, double? LatencyMs, DateTimeOffset? Since, int Mtu);

/// <summary>A PathFinder's path MTU changed, or it stopped: the PathManager sets the TUN's MTU to the largest any path carries.</summary>
public sealed class PathMtuChanged
{
    public static readonly PathMtuChanged Instance = new();
}

/// <summary>Every peer's path, and how many disco packets were ignored because no peer has their sender's key.</summary>
public sealed record PathStatusReply(IReadOnlyList<PathStatus> Paths, long UnknownDiscoPackets = 0);

/// <summary>The relay connection for a region that a packet needs (RelayHub → PathManager).</summary>
public sealed record OpenRegion(int RegionId);

/// <summary>A netcheck finished (EndpointDiscovery → PathManager).</summary>
public sealed record NetcheckDone(NetcheckReport Report, ImmutableArray<IPEndPoint> Endpoints);

/// <summary>This agent's endpoints changed (PathManager → PathFinders): call-me-maybe sends these, and a change is roaming.</summary>
public sealed record OwnEndpointsChanged(ImmutableArray<IPEndPoint> Endpoints, bool Roamed);

/// <summary>Which relays exist, where (PathManager → EndpointDiscovery).</summary>
public sealed record RelayMapKnown(Contracts.Control.RelayMap Map, string ControlHost);
