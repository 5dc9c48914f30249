using Akka.Actor;
using Akka.Hosting;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;
using Weft.Contracts.Relay;

namespace Weft.Cluster.Relays;

/// <summary>
/// Whether relay tickets' node keys still have access, by the tailnets' own records, whichever node holds each
/// tailnet's entity: a device deleted, expired or rotated to a new key is out, even when the asking relay
/// restarted since its revocation, was cut off when it went round, or is a separate <c>weft-relay</c> that
/// hears none. A deleted tailnet answers not found, which is out too. A tailnet that cannot answer within
/// <see cref="TailnetTimeout"/> (its entity is moving, the cluster is unreachable) leaves its tickets unknown
/// (null), and the relay decides. Used by the embedded relay (<see cref="EmbeddedRelay"/>) and by separate
/// relays through <c>POST /relay/access</c> (<see cref="RelayAccessEndpoint"/>).
/// </summary>
public sealed class RelayAccessChecker(IRequiredActor<TailnetActor> tailnets, ILogger<RelayAccessChecker> log)
{
    /// <summary>Within a relay's own limit for the whole check (3 s by default), so that one slow tailnet leaves only its own tickets unknown.</summary>
    public static readonly TimeSpan TailnetTimeout = TimeSpan.FromSeconds(2);

    /// <summary>One answer per ticket, in order; one ask per tailnet, all at once.</summary>
    public async Task<IReadOnlyList<bool?>> StillHaveAccessAsync(IReadOnlyList<RelayTicket> tickets, CancellationToken cancellation)
    {
        var region = await tailnets.GetAsync(cancellation);
        var answers = new bool?[tickets.Count];
        var byTailnet = Enumerable.Range(0, tickets.Count).GroupBy(i => tickets[i].TailnetId, StringComparer.Ordinal);
        await Task.WhenAll(byTailnet.Select(async group =>
        {
            var indexes = group.ToList();
            var allowed = await AskTailnetAsync(region, group.Key, [.. indexes.Select(i => tickets[i].NodeKey.ToHex())], cancellation);
            for (var n = 0; n < indexes.Count; n++) answers[indexes[n]] = allowed?[n];
        }));
        return answers;
    }

    /// <summary>The tailnet's answer for each key; null when it could not tell in time.</summary>
    private async Task<IReadOnlyList<bool>?> AskTailnetAsync(IActorRef region, string tailnetId, IReadOnlyList<string> nodeKeys, CancellationToken cancellation)
    {
        object answer;
        try
        {
            answer = await region.Ask<object>(new CheckRelayAccess(tailnetId, nodeKeys), TailnetTimeout, cancellation);
        }
        catch (AskTimeoutException)
        {
            log.LogDebug("Tailnet {Tailnet} did not answer a relay access check within {Timeout}", tailnetId, TailnetTimeout);
            return null;
        }
        switch (answer)
        {
            case RelayAccess access when access.Allowed.Count == nodeKeys.Count:
                return access.Allowed;
            case Rejection { Code: ApiErrorCodes.NotFound }:
                return [.. nodeKeys.Select(_ => false)];
            default:
                log.LogDebug("Tailnet {Tailnet} could not answer a relay access check: {Answer}", tailnetId, answer is Rejection r ? r.Message : answer.GetType().Name);
                return null;
        }
    }
}
