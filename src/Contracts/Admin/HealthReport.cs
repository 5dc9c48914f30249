namespace Weft.Contracts.Admin;

/// <summary>Body of <c>GET /healthz</c>: this node's view of the coordination cluster.</summary>
public sealed record HealthReport(string Status, ClusterMemberResource Self, string? Leader, IReadOnlyList<ClusterMemberResource> Members);

public sealed record ClusterMemberResource(string Address, string Status, bool Reachable, IReadOnlyList<string> Roles);

/// <summary>
/// Body of <c>GET /healthz/ready</c>: whether this node can serve requests now, and each check behind
/// the answer (a load balancer sends traffic only to ready nodes).
/// </summary>
public sealed record ReadinessReport(bool Ready, IReadOnlyList<ReadinessCheck> Checks);

public sealed record ReadinessCheck(string Name, bool Ok, string Detail);
