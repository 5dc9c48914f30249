using System.Net;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;
using Weft.Relay;

namespace Weft.NodeAgent.Tests.Support;

/// <summary>A real relay (and STUN server) on loopback that trusts its own ticket issuer: tickets for any key, and raw client connections.</summary>
public sealed class LoopbackRelay : IAsyncDisposable
{
    private readonly NSec.Cryptography.Key _issuer = RelayTicket.SigningKey(RelayTicket.NewSigningSeed());
    private readonly string _tailnetId;

    public LoopbackRelay(string tailnetId)
    {
        _tailnetId = tailnetId;
        Server = new RelayServer(new RelayOptions
        {
            Listen = new IPEndPoint(IPAddress.Loopback, 0),
            Stun = new IPEndPoint(IPAddress.Loopback, 0),
            ServerKey = Curve25519PrivateKey.Generate(),
            TicketIssuers = [_issuer.PublicKey],
        });
        Server.Start();
    }

    public RelayServer Server { get; }

    public int Port => Server.LocalEndpoint.Port;

    /// <summary>A ticket for <paramref name="key"/>, good for an hour.</summary>
    public byte[] Ticket(Curve25519PublicKey key) => new RelayTicket(key, _tailnetId, DateTimeOffset.UtcNow.AddHours(1)).Sign(_issuer);

    /// <summary>A client connection logged in as <paramref name="key"/>.</summary>
    public Task<RelayClientConnection> Connect(Curve25519PrivateKey key) => RelayClientConnection.ConnectAsync(
        new RelayNodeAddress("127.0.0.1", Port), key, new ClientInfo { Ticket = Ticket(key.PublicKey) }, CancellationToken.None);

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        _issuer.Dispose();
    }
}
