using Weft.Cluster.Messaging;
using Weft.Cluster.Policy;

namespace Weft.Cluster.Tailnets;

// The tailnet's access policy: set it (validated and tested first), read it, validate a candidate,
// and ask the live policy whether a source may reach a destination.

/// <summary>Replaces the policy. Refused (and the old one stays in force) if it does not parse, or a test fails.</summary>
[WireName("tailnet.set-policy")]
public sealed record SetPolicy(string TailnetId, string Text, DateTimeOffset At) : ITailnetCommand;

[WireName("tailnet.get-policy")]
public sealed record GetPolicy(string TailnetId) : ITailnetMessage;

/// <summary>Checks a candidate policy against this tailnet (names, then its tests) without storing it.</summary>
[WireName("tailnet.validate-policy")]
public sealed record ValidatePolicy(string TailnetId, string Text) : ITailnetMessage;

/// <summary>May <paramref name="Source"/> reach <paramref name="Destination"/> (target:port) under the live policy?</summary>
[WireName("tailnet.check-access")]
public sealed record CheckAccess(string TailnetId, string Source, string Destination, string? Protocol) : ITailnetMessage;

/// <param name="Version">1 is the default policy a tailnet starts with; every accepted change adds one.</param>
[WireName("tailnet.policy")]
public sealed record PolicyInfo(string Text, int Version, DateTimeOffset UpdatedAt) : IClusterMessage;

[WireName("tailnet.policy-validation")]
public sealed record PolicyValidation(IReadOnlyList<PolicyIssue> Issues, int Rules, int TestsRun) : IClusterMessage;

[WireName("tailnet.access")]
public sealed record AccessAnswer(bool Allowed, int? Rule, string Explanation) : IClusterMessage;

public sealed record PolicyChanged(string Text, int Version, DateTimeOffset At) : ITailnetEvent;
