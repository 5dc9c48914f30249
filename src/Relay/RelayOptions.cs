using System.Net;
using System.Security.Cryptography.X509Certificates;

using Weft.Contracts.Keys;

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
    /// <summary>With a certificate, connections that start a TLS handshake get TLS.</summary>
    public X509Certificate2? Certificate { get; init; }
    /// <summary>Packets queued per client before the oldest is dropped (DERP uses 32).</summary>
    public int QueueDepth { get; init; } = 32;
    public int DiscoQueueDepth { get; init; } = 16;
    public TimeSpan KeepAliveInterval { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>A client that sends nothing for this long is disconnected (its keepalive replies count).</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(120);
    public TimeSpan MeshRetryInterval { get; init; } = TimeSpan.FromSeconds(5);
    public int MaxClients { get; init; } = 100_000;
    public Func<DateTimeOffset> Clock { get; init; } = () => DateTimeOffset.UtcNow;
}
