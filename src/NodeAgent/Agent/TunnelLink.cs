using System.Net.Sockets;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Agent;

/// <summary>The operating-system side of the tailnet interface: its addresses and routes.</summary>
public interface ITunnelLink
{
    /// <summary>Brings the interface up with the routes of the tailnet ranges.</summary>
    void Up();

    /// <summary>Makes the interface's addresses exactly these (the device's tailnet addresses).</summary>
    void SetAddresses(IReadOnlyList<IpPrefix> addresses);

    /// <summary>Makes these exactly the routes into the tunnel beyond the tailnet ranges: peers' subnets, and the default route through an exit node.</summary>
    void SetRoutes(IReadOnlyCollection<IpPrefix> routes);

    /// <summary>Puts back the routing that another program took away since it was set, and takes out what is no longer wanted but stayed; returns what it corrected (empty: nothing was amiss).</summary>
    IReadOnlyList<string> Reassert();
}

/// <summary>
/// A Linux TUN configured as Tailscale configures its own: the device's addresses as /32 and
/// /128, and routes for the whole tailnet ranges (100.64.0.0/10 and fd7a:115c:a1e0::/48) into
/// the interface, so that a peer that joins later needs no route change; packets for addresses
/// no peer holds are dropped by the engine.
/// </summary>
public sealed class LinuxTunnelLink(string interfaceName, int mtu) : ITunnelLink, IDisposable
{
    private readonly Net.PolicyRouting _routing = new(interfaceName);

    public static readonly IpPrefix TailnetV4 = IpPrefix.Parse("100.64.0.0/10");
    public static readonly IpPrefix TailnetV6 = IpPrefix.Parse("fd7a:115c:a1e0::/48");

    private IReadOnlyList<IpPrefix> _addresses = [];

    public void Up() => LinkConfigurator.Up(interfaceName, mtu, [], [TailnetV4, TailnetV6]);

    public void SetAddresses(IReadOnlyList<IpPrefix> addresses)
    {
        foreach (var old in _addresses.Except(addresses))
            LinkConfigurator.Ip(Family(old), "address", "del", old.ToString(), "dev", interfaceName);
        foreach (var fresh in addresses.Except(_addresses))
        {
            // nodad: the address is ours alone inside the tunnel; waiting for duplicate detection only delays it.
            if (fresh.IsIPv4) LinkConfigurator.Ip("-4", "address", "replace", fresh.ToString(), "dev", interfaceName);
            else LinkConfigurator.Ip("-6", "address", "replace", fresh.ToString(), "dev", interfaceName, "nodad");
        }
        _addresses = addresses;
    }

    private static string Family(IpPrefix prefix) => prefix.IsIPv4 ? "-4" : "-6";

    public void SetRoutes(IReadOnlyCollection<IpPrefix> routes) => _routing.Apply(routes);

    public IReadOnlyList<string> Reassert() => _routing.Reassert();

    public void Dispose() => _routing.Dispose();
}

/// <summary>For in-memory TUNs (tests, simulated nodes): there is no operating-system interface to configure.</summary>
public sealed class NoTunnelLink : ITunnelLink
{
    public IReadOnlyList<IpPrefix> Addresses { get; private set; } = [];

    public void Up() { }

    public void SetAddresses(IReadOnlyList<IpPrefix> addresses) => Addresses = addresses;

    public IReadOnlyCollection<IpPrefix> Routes { get; private set; } = [];

    public void SetRoutes(IReadOnlyCollection<IpPrefix> routes) => Routes = routes;

    public IReadOnlyList<string> Reassert() => [];
}
