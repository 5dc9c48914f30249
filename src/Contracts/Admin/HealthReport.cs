namespace Weft.Contracts.Admin;

/// <summary>Body of <c>GET /healthz</c>: this node's view of the coordination cluster.</summary>
public sealed record HealthReport(string Status, ClusterMemberResource Self, string? Leader, IReadOnlyList<ClusterMemberResource> Members);

public sealed record ClusterMemberResource(string Address, string Status, bool Reachable, IReadOnlyList<string> Roles);
