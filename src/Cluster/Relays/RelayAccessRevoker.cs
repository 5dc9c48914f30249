using Akka.Actor;
using MemberStatus = Akka.Cluster.MemberStatus;
using Weft.Cluster.Messaging;
using Weft.Contracts.Keys;

namespace Weft.Cluster.Relays;

/// <summary>
/// These node keys lost their access to the relays at <paramref name="At"/>: their devices were deleted or
/// expired (or logged out), or their tailnet was deleted. Sent by the tailnet to every node's revoker.
/// </summary>
[WireName("relay.revoke")]
public sealed record RevokeRelayAccess(IReadOnlyList<string> NodeKeys, DateTimeOffset At) : IClusterMessage;

/// <summary>
/// One on every coordinator node (<c>/user/relay-access</c>): takes revocations to this node's embedded relay,
/// which closes the keys' connections and refuses the tickets the cluster issued them until then. A ticket
/// alone would admit a deleted device for the rest of its life (an hour by default).
/// <para>
/// Best effort, by design, and not the only guard: a node that is unreachable when the tailnet sends, or
/// that restarts or joins later, does not hear it, and nothing is stored. What it misses is only the prompt
/// closing of live connections on that node: the embedded relay asks the ticket's tailnet at each login, and
/// again for every live connection each <see cref="RelaySettings.AccessRecheckSeconds"/> (<see cref="RelayAccessChecker"/>).
/// A relay run on its own (<c>weft-relay</c>) hears none; it asks the same way when given coordinators
/// (<c>--access-check-url</c>), and otherwise trusts its tickets until they expire.
/// </para>
/// </summary>
public sealed class RelayAccessRevoker : ReceiveActor
{
    public const string Name = "relay-access";

    /// <summary>Node keys per message: a deleted tailnet of thousands of devices stays under the transport's frame size.</summary>
    public const int KeysPerMessage = 256;

    public RelayAccessRevoker(EmbeddedRelay relay, RelayTicketIssuer issuer)
    {
        Receive<RevokeRelayAccess>(revoke =>
        {
            if (relay.Server is not { } server) return;
            // Every ticket issued before the revocation expires by then; one issued later expires after.
            var ticketsExpiringBy = revoke.At + issuer.Lifetime;
            foreach (var hex in revoke.NodeKeys)
                if (Curve25519PublicKey.TryParseHex(hex, out var key)) server.Revoke(key, ticketsExpiringBy);
        });
    }

    public static Props PropsFor(EmbeddedRelay relay, RelayTicketIssuer issuer) => Props.Create(() => new RelayAccessRevoker(relay, issuer));

    /// <summary>Sends the revocation of <paramref name="nodeKeys"/> to the revoker of every member of the cluster (this node's too).</summary>
    public static void Broadcast(IActorContext context, IReadOnlyCollection<string> nodeKeys, DateTimeOffset at)
    {
        if (nodeKeys.Count == 0) return;
        // A system that is not a cluster (an entity's unit tests) has only itself to tell.
        var provider = ((ExtendedActorSystem)context.System).Provider;
        var addresses = provider is Akka.Cluster.ClusterActorRefProvider
            ? Akka.Cluster.Cluster.Get(context.System).State.Members
                .Where(m => m.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Joining or MemberStatus.Leaving)
                .Select(m => m.Address).ToList()
            : [provider.DefaultAddress];
        foreach (var chunk in nodeKeys.Chunk(KeysPerMessage))
        {
            var message = new RevokeRelayAccess(chunk, at);
            foreach (var address in addresses) context.ActorSelection(new RootActorPath(address) / "user" / Name).Tell(message);
        }
    }
}
