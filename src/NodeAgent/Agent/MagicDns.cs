using System.Collections.Immutable;
using System.Net;
using Microsoft.Extensions.Logging;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Dns;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Agent;

/// <summary>
/// MagicDNS on the agent: a <see cref="MagicDnsServer"/> on the device's own tailnet addresses,
/// answering <c>&lt;host&gt;.&lt;tailnet suffix&gt;</c> for itself and every peer in its netmap. It
/// moves when the addresses change, and its names follow every netmap.
/// </summary>
public sealed class MagicDns(int port, ILogger log) : IDisposable
{
    private MagicDnsServer? _server;
    private ImmutableArray<IpPrefix> _boundTo = [];

    public IReadOnlyList<IPEndPoint> Endpoints => _server?.LocalEndpoints ?? [];

    /// <summary>Follows a netmap (null: the tunnels are down, so no names are served).</summary>
    public void Update(NetMapView? view, ImmutableArray<IpPrefix> addresses)
    {
        if (!addresses.SequenceEqual(_boundTo)) Rebind(addresses);
        if (_server is not { } server) return;
        try
        {
            server.Names = view is null ? DnsNameTable.Empty : NamesOf(view);
        }
        catch (ArgumentException e)
        {
            // A name the table refuses (a duplicate, a name outside the zone): keep answering with the previous names.
            log.LogWarning("MagicDNS keeps its previous names: {Reason}", e.Message);
        }
    }

    /// <summary>Every device of the netmap under its FQDN (self included), and the tailnet suffix as the zone we answer for.</summary>
    public static DnsNameTable NamesOf(NetMapView view)
    {
        var records = new List<DnsHost>();
        foreach (var node in view.Peers.Values.Append(view.Self).OfType<Weft.Contracts.Control.Node>())
        {
            if (string.IsNullOrEmpty(node.Fqdn)) continue;
            records.Add(new DnsHost(node.Fqdn, [.. NodeAddresses.Of(node)]));
        }
        var suffix = view.Dns?.Suffix is { Length: > 0 } configured ? configured
            : view.Self?.Fqdn is { } fqdn && fqdn.IndexOf('.') is var dot and > 0 ? fqdn[(dot + 1)..] : null;
        return new DnsNameTable(records, suffix is null ? [] : [suffix.TrimEnd('.')]);
    }

    private void Rebind(ImmutableArray<IpPrefix> addresses)
    {
        var names = _server?.Names;
        _server?.Dispose();
        _server = null;
        _boundTo = addresses;
        if (addresses.IsEmpty) return;
        try
        {
            _server = new MagicDnsServer(addresses.Select(a => new IPEndPoint(a.Address, port)).ToList(), names ?? DnsNameTable.Empty);
            log.LogInformation("MagicDNS answers on {Endpoints}", string.Join(", ", _server.LocalEndpoints));
        }
        catch (System.Net.Sockets.SocketException e)
        {
            log.LogWarning("MagicDNS cannot listen on port {Port} of the tailnet addresses: {Error}", port, e.Message);
        }
    }

    public void Dispose() => _server?.Dispose();
}
