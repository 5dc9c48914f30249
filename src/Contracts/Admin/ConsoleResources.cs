namespace Weft.Contracts.Admin;

/// <summary>
/// Body of <c>GET /api/v1/tailnets/{tailnet}/mesh</c> (and of each <c>mesh</c> event of
/// <c>…/events</c>): the devices, and every pair the policy lets reach each other.
/// </summary>
/// <param name="LinksComplete">False when the pairs were too many to list (<c>links</c> is then empty): a graph of them is past drawing.</param>
public sealed record MeshResource(IReadOnlyList<DeviceResource> Devices, IReadOnlyList<MeshLinkResource> Links, bool LinksComplete = true);

/// <summary>
/// Two devices that may reach each other. <paramref name="Path"/> is the path the coordinator expects:
/// <c>direct</c> when both report UDP endpoints (a hole punch can succeed), <c>relayed</c> when either has
/// none and their traffic goes through the relays, <c>offline</c> when either is offline. The agents
/// themselves know the path in use (<c>weft-agent status</c>).
/// </summary>
public sealed record MeshLinkResource(string A, string B, string Path);

/// <summary>Body of <c>GET /api/v1/cluster</c> (operator keys only): the coordinator nodes and what each one runs.</summary>
public sealed record ClusterResource(string? Leader, IReadOnlyList<ClusterNodeResource> Nodes);

/// <summary>One coordinator node: its membership, its shards and entities per entity type, and the agents connected to it (null when it did not answer).</summary>
public sealed record ClusterNodeResource(
    string Address, string Status, bool Reachable, IReadOnlyList<ShardCountResource> Shards, int? Agents);

public sealed record ShardCountResource(string EntityType, int Shards, int Entities);
