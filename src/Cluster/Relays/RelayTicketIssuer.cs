using Google.Protobuf;
using NSec.Cryptography;
using Weft.Cluster.Hosting;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Cluster.Relays;

/// <summary>
/// Signs relay tickets and holds the relay map, for the sessions to hand to their agents. The
/// signing key is derived from the cluster secret, so every node signs with the same key and a
/// relay trusts tickets from any of them (it is printed at start as the relays' <c>--ticket-issuer</c>).
/// </summary>
public sealed class RelayTicketIssuer : IDisposable
{
    private readonly Key _signingKey;
    private readonly RelaySettings _settings;
    private volatile RelayMap? _map;
    private (int Relay, int Stun)? _embeddedPorts;

    public RelayTicketIssuer(RelaySettings settings, ClusterSecret secret)
    {
        _settings = settings;
        _signingKey = RelayTicket.SigningKey(secret.Derive("relay tickets ed25519"));
        Lifetime = TimeSpan.FromMinutes(settings.TicketLifetimeMinutes);
    }

    /// <summary>The map agents receive (built once; with the embedded relay, from the ports it actually bound).</summary>
    public RelayMap Map => _map ??= BuildMap(_settings, _embeddedPorts);

    /// <summary>The embedded relay started on these ports (they may have been 0 in the settings).</summary>
    public void UseEmbeddedPorts(int relayPort, int stunPort)
    {
        _embeddedPorts = (relayPort, stunPort);
        _map = null;
    }

    public TimeSpan Lifetime { get; }

    public PublicKey IssuerKey => _signingKey.PublicKey;

    /// <summary>The form <c>weft-relay --ticket-issuer</c> takes.</summary>
    public string IssuerText => "ed25519:" + Convert.ToHexStringLower(_signingKey.PublicKey.Export(KeyBlobFormat.RawPublicKey));

    /// <summary>
    /// A ticket for <paramref name="nodeKey"/>, valid for the lifetime but never past the device's key
    /// expiry (an expired device cannot keep using the relays), with the map when asked.
    /// </summary>
    public RelayUpdate Issue(Curve25519PublicKey nodeKey, string tailnetId, DateTimeOffset now, DateTimeOffset? keyExpiry, bool withMap)
    {
        var expiry = now + Lifetime;
        if (keyExpiry is { } limit && limit < expiry) expiry = limit;
        var ticket = new RelayTicket(nodeKey, tailnetId, expiry).Sign(_signingKey);
        var update = new RelayUpdate
        {
            Ticket = ByteString.CopyFrom(ticket),
            TicketExpiry = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeSeconds(expiry.ToUnixTimeSeconds())),
        };
        if (withMap) update.Map = Map;
        return update;
    }

    private static RelayMap BuildMap(RelaySettings settings, (int Relay, int Stun)? embedded)
    {
        var map = new RelayMap();
        if (settings.Regions.Length == 0 && !settings.Embedded) return map; // no relays at all
        if (settings.Regions.Length == 0)
        {
            var port = embedded?.Relay ?? settings.ListenEndpoint.Port;
            var stunPort = embedded?.Stun ?? settings.StunEndpoint?.Port ?? 0;
            map.Regions.Add(new RelayRegion
            {
                Id = settings.RegionId, Code = settings.RegionCode, Name = settings.RegionCode,
                Nodes = { new RelayNode { Name = settings.RegionCode + "-1", Host = settings.PublicHost, Port = port, StunPort = stunPort } },
            });
            return map;
        }
        foreach (var region in settings.Regions)
        {
            var built = new RelayRegion { Id = region.Id, Code = region.Code, Name = region.Name.Length > 0 ? region.Name : region.Code, Avoid = region.Avoid };
            foreach (var node in region.Nodes)
                built.Nodes.Add(new RelayNode { Name = node.Name, Host = node.Host, Port = node.Port, StunPort = node.StunPort, Tls = node.Tls, InsecureForTests = node.InsecureForTests });
            map.Regions.Add(built);
        }
        return map;
    }

    public void Dispose() => _signingKey.Dispose();
}
