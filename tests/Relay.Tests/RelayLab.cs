using System.Net;
using NSec.Cryptography;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay.Tests;

/// <summary>Real relays on loopback ports, with a ticket issuer standing in for the cluster, and clients that log in with its tickets.</summary>
public sealed class RelayLab : IAsyncDisposable
{
    public const string MeshKey = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    private readonly List<IAsyncDisposable> _owned = [];

    public Key Issuer { get; } = RelayTicket.SigningKey(RelayTicket.NewSigningSeed());

    public RelayServer StartRelay(IReadOnlyList<RelayNodeAddress>? meshPeers = null, int port = 0, Func<RelayOptions, RelayOptions>? configure = null)
    {
        var options = new RelayOptions
        {
            Listen = new IPEndPoint(IPAddress.Loopback, port),
            Stun = new IPEndPoint(IPAddress.Loopback, 0),
            ServerKey = Curve25519PrivateKey.Generate(),
            TicketIssuers = [Issuer.PublicKey],
            MeshKey = MeshKey,
            MeshPeers = meshPeers ?? [],
            MeshRetryInterval = TimeSpan.FromMilliseconds(200),
        };
        var server = new RelayServer(configure?.Invoke(options) ?? options);
        server.Start();
        _owned.Add(server);
        return server;
    }

    /// <summary>An access check that answers each ticket of a batch on its own (null: it cannot tell).</summary>
    public static Func<IReadOnlyList<RelayTicket>, CancellationToken, Task<IReadOnlyList<bool?>>> EachTicket(Func<RelayTicket, CancellationToken, Task<bool?>> check) =>
        async (tickets, cancel) => await Task.WhenAll(tickets.Select(ticket => check(ticket, cancel)));

    /// <summary>
    /// A self-signed certificate for <paramref name="host"/>, valid for the next hour: one that no client trusts
    /// unless it skips the check. An exportable copy, since SslStream on Linux needs the key in a form it can load.
    /// </summary>
    public static System.Security.Cryptography.X509Certificates.X509Certificate2 SelfSignedCertificate(string host)
    {
        using var rsa = System.Security.Cryptography.RSA.Create(2048);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest($"CN={host}", rsa,
            System.Security.Cryptography.HashAlgorithmName.SHA256, System.Security.Cryptography.RSASignaturePadding.Pkcs1);
        using var created = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        return System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadPkcs12(
            created.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pfx), null);
    }

    /// <summary>A loopback TCP port free a moment ago (for a relay that must come back on the same port, or a process that takes a port number).</summary>
    public static int FreePort()
    {
        var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    public static RelayNodeAddress AddressOf(RelayServer server) => new("127.0.0.1", server.LocalEndpoint.Port);

    public byte[] Ticket(Curve25519PublicKey node, TimeSpan? validFor = null, string tailnet = "tn_test") =>
        new RelayTicket(node, tailnet, DateTimeOffset.UtcNow + (validFor ?? TimeSpan.FromHours(1))).Sign(Issuer);

    public async Task<(RelayClientConnection Client, Curve25519PrivateKey Key)> Connect(RelayServer server, Curve25519PrivateKey? key = null, string tailnet = "tn_test")
    {
        key ??= Curve25519PrivateKey.Generate();
        var client = await RelayClientConnection.ConnectAsync(AddressOf(server), key, new ClientInfo { Ticket = Ticket(key.PublicKey, tailnet: tailnet) }, CancellationToken.None);
        _owned.Add(client);
        return (client, key);
    }

    /// <summary>The next packet frame (RecvPacket) within a few seconds, skipping others; null if none came.</summary>
    public static async Task<(Curve25519PublicKey Source, byte[] Packet)?> NextPacket(RelayClientConnection client, TimeSpan? within = null)
    {
        using var timeout = new CancellationTokenSource(within ?? TimeSpan.FromSeconds(10));
        try
        {
            while (await client.ReadAsync(timeout.Token) is { } frame)
            {
                if (frame.Type != RelayFrameType.RecvPacket) continue;
                return (new Curve25519PublicKey(frame.Payload.AsSpan(0, 32)), frame.Payload[32..]);
            }
        }
        catch (OperationCanceledException) { }
        return null;
    }

    /// <summary>The next frame of <paramref name="type"/> within a few seconds; null if none came.</summary>
    public static async Task<byte[]?> NextFrame(RelayClientConnection client, RelayFrameType type, TimeSpan? within = null)
    {
        using var timeout = new CancellationTokenSource(within ?? TimeSpan.FromSeconds(10));
        try
        {
            while (await client.ReadAsync(timeout.Token) is { } frame)
                if (frame.Type == type) return frame.Payload;
        }
        catch (OperationCanceledException) { }
        return null;
    }

    /// <summary>Polls <paramref name="condition"/> until it holds, for up to 10 s (the relays work on their own threads).</summary>
    public static async Task<bool> Eventually(Func<bool> condition, TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(10));
        while (DateTime.UtcNow < deadline)
        {
            if (condition()) return true;
            await Task.Delay(20);
        }
        return condition();
    }

    public async ValueTask DisposeAsync()
    {
        for (var i = _owned.Count - 1; i >= 0; i--) await _owned[i].DisposeAsync();
    }
}
