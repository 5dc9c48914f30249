using Weft.Cluster.Hosting;
using Weft.Contracts.Keys;
using Weft.Relay;

namespace Weft.Cluster.Relays;

/// <summary>
/// The relay and STUN server that run inside the coordinator process by default, so that the
/// single-node start gives a mesh that works through NAT with nothing else to run. Its key is
/// derived from the cluster secret and its listen address; it trusts this cluster's tickets, and at each
/// login, and again every <see cref="RelaySettings.AccessRecheckSeconds"/> for each live connection, asks the ticket's
/// tailnet whether the ticket's node key still has access (<see cref="RelayAccessChecker"/>).
/// </summary>
public sealed class EmbeddedRelay(RelaySettings settings, RelayTicketIssuer issuer, ClusterSecret secret, RelayAccessChecker access,
    ILogger<EmbeddedRelay> log) : IHostedService, IAsyncDisposable
{
    private RelayServer? _server;

    /// <summary>The running relay (null until started, or when embedding is off).</summary>
    public RelayServer? Server => _server;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!settings.Embedded) return Task.CompletedTask;
        var key = Curve25519PrivateKey.FromBytes(secret.Derive("embedded relay x25519 " + settings.Listen));
        _server = new RelayServer(new RelayOptions
        {
            Listen = settings.ListenEndpoint,
            Stun = settings.StunEndpoint,
            ServerKey = key,
            TicketIssuers = [issuer.IssuerKey],
            MeshKey = settings.MeshKey,
            MeshPeers = [.. settings.MeshPeers.Select(RelayNodeAddress.Parse)],
            AccessCheck = access.StillHaveAccessAsync,
            AccessRecheckInterval = TimeSpan.FromSeconds(settings.AccessRecheckSeconds),
        }, log);
        try
        {
            _server.Start();
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new InvalidOperationException($"the embedded relay cannot listen on tcp {settings.Listen} / udp {settings.Stun}: {e.Message} " +
                "(set --relay-listen and --stun-listen, Weft:Relay:Listen and Weft:Relay:Stun, or --no-embedded-relay)", e);
        }
        issuer.UseEmbeddedPorts(_server.LocalEndpoint.Port, _server.StunEndpoint?.Port ?? 0);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken) => await DisposeAsync();

    public async ValueTask DisposeAsync()
    {
        if (_server is { } server)
        {
            _server = null;
            await server.DisposeAsync();
        }
    }
}
