using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.Api;
using Weft.Contracts.Admin;
using Weft.Contracts.Relay;

namespace Weft.Cluster.Relays;

/// <summary>
/// <c>POST /relay/access</c> on the API listener: a separate relay (<c>weft-relay --access-check-url</c>) asks
/// whether its clients' tickets still have access (<see cref="RelayAccessQuery"/>), so that a device deleted,
/// expired or rotated to a new key is refused there before its ticket expires, as on the embedded relays. No
/// API key: each ticket must carry this cluster's signature, so a caller learns only about tickets it was
/// shown. A ticket that does not verify is a bad request (the relay trusts another issuer, or the body is not
/// what a relay sends); an expired one is answered false; one whose tailnet could not answer in time, null.
/// The address's rate limit applies, as to the API.
/// </summary>
public static class RelayAccessEndpoint
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    public static void MapRelayAccessEndpoint(this WebApplication app) => app.MapPost(RelayAccessQuery.Path, Answer);

    private static async Task<IResult> Answer(HttpContext http, RelayTicketIssuer issuer, RelayAccessChecker checker)
    {
        var body = (await JsonRequestBody.ReadAsync(http.Request)).AllowOnly("tickets");
        var encoded = body.OptionalStringList("tickets", RelayAccessQuery.MaxTickets) ?? throw ApiException.Invalid("missing required field 'tickets'");
        var now = DateTimeOffset.UtcNow;
        var answers = new bool?[encoded.Count];
        var live = new List<(int Index, RelayTicket Ticket)>();
        for (var i = 0; i < encoded.Count; i++)
        {
            var bytes = new byte[RelayTicket.MaxSize];
            if (!Convert.TryFromBase64String(encoded[i], bytes, out var length))
                throw ApiException.Invalid($"tickets[{i}] is not a base64 relay ticket of at most {RelayTicket.MaxSize} bytes");
            var ticket = RelayTicket.Verify(bytes.AsSpan(0, length), [issuer.IssuerKey], now, out var refusal);
            if (refusal == TicketRefusal.Expired)
            {
                answers[i] = false; // out, as it would be at the relay
                continue;
            }
            if (ticket is null) throw ApiException.Invalid($"tickets[{i}] is refused ({refusal}): it is not a ticket this cluster signed");
            live.Add((i, ticket));
        }
        if (live.Count > 0)
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
            deadline.CancelAfter(Deadline);
            IReadOnlyList<bool?> allowed;
            try
            {
                allowed = await checker.StillHaveAccessAsync([.. live.Select(t => t.Ticket)], deadline.Token);
            }
            catch (OperationCanceledException) when (!http.RequestAborted.IsCancellationRequested)
            {
                throw new ApiException(ApiErrorCodes.Unavailable, "the cluster could not answer for these tickets' tailnets in time");
            }
            for (var n = 0; n < live.Count; n++) answers[live[n].Index] = allowed[n];
        }
        return Results.Json(new RelayAccessAnswer { Allowed = answers });
    }
}
