using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay.Tests;

/// <summary>The relay's one port also speaks TLS when it has a certificate.</summary>
public class RelayTlsTests
{
    [Fact]
    public async Task Clients_log_in_and_exchange_packets_over_tls_on_the_same_port_as_plain_connections()
    {
        using var certificate = RelayLab.SelfSignedCertificate("relay.test");
        await using var lab = new RelayLab();
        var relay = lab.StartRelay(configure: o => o with { Certificate = certificate });
        using var aliceKey = Curve25519PrivateKey.Generate();
        var tls = new RelayNodeAddress("127.0.0.1", relay.LocalEndpoint.Port, Tls: true, InsecureSkipVerify: true);
        await using var alice = await RelayClientConnection.ConnectAsync(tls, aliceKey, new ClientInfo { Ticket = lab.Ticket(aliceKey.PublicKey) }, CancellationToken.None);
        var (bob, bobKey) = await lab.Connect(relay); // plain, same port

        alice.TrySend(bobKey.PublicKey, "over tls"u8);
        Assert.Equal(aliceKey.PublicKey, (await RelayLab.NextPacket(bob))!.Value.Source);
        bob.TrySend(aliceKey.PublicKey, "back"u8);
        Assert.Equal(bobKey.PublicKey, (await RelayLab.NextPacket(alice))!.Value.Source);

        // Without skipping the check, a self-signed certificate is refused by the client.
        using var carol = Curve25519PrivateKey.Generate();
        await Assert.ThrowsAnyAsync<System.Security.Authentication.AuthenticationException>(() => RelayClientConnection.ConnectAsync(tls with { InsecureSkipVerify = false }, carol,
            new ClientInfo { Ticket = lab.Ticket(carol.PublicKey) }, CancellationToken.None));
    }
}
