namespace Weft.Contracts.Admin;

/// <summary>One admin change as the audit log keeps it.</summary>
/// <param name="Actor">The API key that made it: <c>operator-key &lt;id&gt;</c> or <c>tailnet-key &lt;id&gt;</c>.</param>
/// <param name="Action">The request's method and route, e.g. <c>POST /api/v1/tailnets/{tailnet}/auth-keys</c>.</param>
/// <param name="Target">The route's values as the caller gave them, e.g. <c>tailnet=acme device=web</c>.</param>
/// <param name="Status">The HTTP status of the answer.</param>
/// <param name="Source">The client's IP address.</param>
public sealed record AuditEntryResource(DateTimeOffset At, string Actor, string Action, string Target, int Status, string Source);

/// <summary>
/// <c>GET /api/v1/tailnets/{tailnet}/audit</c> and <c>GET /api/v1/audit</c> (changes that belong to no
/// tailnet), oldest first. <paramref name="Truncated"/>: older entries match too (raise <c>limit</c> or narrow <c>since</c>).
/// </summary>
public sealed record AuditLogResource(string Log, IReadOnlyList<AuditEntryResource> Entries, bool Truncated);
