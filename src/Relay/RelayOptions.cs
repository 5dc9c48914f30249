using System.Net;
using System.Security.Cryptography.X509Certificates;

using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay;

/// <summary>How one relay node runs.</summary>
public sealed record RelayOptions
{
    /// <summary>The TCP port for relay connections (plain, TLS and HTTP upgrade share it). Port 0 picks one.</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Any, 3340);
    /// <summary>The STUN server's UDP address; null runs none.</summary>
    public IPEndPoint? Stun { get; init; } = new(IPAddress.Any, 3478);
    /// <summary>The relay's own Curve25519 key (clients seal their login to it).</summary>
    public required Curve25519PrivateKey ServerKey { get; init; }
    /// <summary>The cluster's ticket-signing keys: a client is admitted only with a ticket one of them signed.</summary>
    public required IReadOnlyList<NSec.Cryptography.PublicKey> TicketIssuers { get; init; }
    /// <summary>The region's mesh key (64 hex); relays that share it trust each other. Null: no mesh.</summary>
    public string? MeshKey { get; init; }
    /// <summary>The other relays of the region, to watch and forward to.</summary>
    public IReadOnlyList<RelayNodeAddress> MeshPeers { get; init; } = [];
    /// <summary>How a mesh peer's host name is looked up (tests: a DNS whose answers change).</summary>
    public Func<string, CancellationToken, Task<System.Net.IPAddress[]>> ResolveHost { get; init; } = System.Net.Dns.GetHostAddressesAsync;
    /// <summary>With a certificate, connections that start a TLS handshake get TLS.</summary>
    public X509Certificate2? Certificate { get; init; }
    /// <summary>Packets queued per client before the oldest is dropped (DERP uses 32).</summary>
    public int QueueDepth { get; init; } = 32;
    public int DiscoQueueDepth { get; init; } = 16;
    /// <summary>
    /// Control frames (every client's presence among them) a mesh peer's connection holds; one more closes
    /// the link, and the peer dials again and hears every client afresh. Nothing is dropped before that.
    /// </summary>
    public int MeshControlQueueDepth { get; init; } = 1 << 20;
    public TimeSpan KeepAliveInterval { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>A client that sends nothing for this long is disconnected (its keepalive replies count).</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(120);
    /// <summary>
    /// When the relay doubts a client's connection (the same key turned up on another connection here, or on a mesh
    /// peer: the client roamed, and the old one may be a socket whose far end is gone), it pings it; a connection
    /// from which nothing arrives within this long closes, so packets go where the client is now.
    /// </summary>
    public TimeSpan LivenessProbeTimeout { get; init; } = TimeSpan.FromSeconds(5);
    public TimeSpan MeshRetryInterval { get; init; } = TimeSpan.FromSeconds(5);
    public int MaxClients { get; init; } = 100_000;
    /// <summary>
    /// Connections one node key may hold here at once (an agent needs two, old and new, while it changes connections);
    /// one more closes the oldest. A buggy or compromised device could otherwise hold sockets without bound, each
    /// new one warning every older one.
    /// </summary>
    public int MaxConnectionsPerKey { get; init; } = 4;

    /// <summary>
    /// Connections the relay holds at once, in all and from one source address (an IPv6 one counted as its /64):
    /// one more is closed on arrival. A connection costs its socket, buffers and queues before it has even logged
    /// in (for up to 10 s); the relay shares its process with the coordinator by default. Devices behind one NAT
    /// share an address, so the limit per address is generous.
    /// </summary>
    public int MaxConnections { get; init; } = 200_000;

    public int MaxConnectionsPerAddress { get; init; } = 2_000;
    public Func<DateTimeOffset> Clock { get; init; } = () => DateTimeOffset.UtcNow;

    /// <summary>
    /// Asks the tickets' issuer whether their node keys still have access: each one's device was not deleted,
    /// expired or rotated to another key since the ticket was signed. The answer has one entry per ticket, in
    /// order: null where the issuer could not tell (a tailnet's entity is moving, say). A signature holds for
    /// the ticket's whole life, and a revocation heard over the wire is lost when this relay restarts or is
    /// missed while it is cut off; the issuer's own records are what a revocation changes, so asking them at
    /// each login (and again every <see cref="AccessRecheckInterval"/>) refuses such a ticket whatever this
    /// relay heard. A coordinator's embedded relay asks the tailnets' entities; a separate relay asks a
    /// coordinator over HTTP (<see cref="CoordinatorAccessCheck"/>). Null trusts the signature and the expiry
    /// alone. A ticket the check cannot tell about, or a check that fails or does not answer within
    /// <see cref="AccessCheckTimeout"/>, lets the ticket in (and keeps a live connection), with a warning: the
    /// relay stays the fallback path while the cluster moves the tailnet's entity to another node.
    /// </summary>
    public Func<IReadOnlyList<RelayTicket>, CancellationToken, Task<IReadOnlyList<bool?>>>? AccessCheck { get; init; }
    public TimeSpan AccessCheckTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// How often, with an <see cref="AccessCheck"/>, every live client connection is asked about again (plus up to a
    /// tenth of it, at random, so that the relays of a cluster do not ask together). A connection whose key is out
    /// now closes, as a heard revocation closes it: this bounds how long a connection outlives a revocation that
    /// this relay missed (it was cut off, or a rotation sent none) by this interval instead of its ticket's expiry.
    /// A check that cannot answer keeps the connection. Zero or infinite: only logins are checked.
    /// </summary>
    public TimeSpan AccessRecheckInterval { get; init; } = TimeSpan.FromMinutes(5);
}
