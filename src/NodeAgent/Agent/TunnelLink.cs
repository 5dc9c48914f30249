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

    private static readonly IpPrefix[] TailnetRanges = [TailnetV4, TailnetV6];

    public void Up() => LinkConfigurator.Up(interfaceName, mtu, [], TailnetRanges);

    public void SetAddresses(IReadOnlyList<IpPrefix> addresses)
    {
        foreach (var old in _addresses.Except(addresses))
            LinkConfigurator.Ip(Family(old), "address", "del", old.ToString(), "dev", interfaceName);
        foreach (var fresh in addresses.Except(_addresses)) AddAddress(fresh);
        _addresses = addresses;
    }

    private void AddAddress(IpPrefix address)
    {
        // nodad: the address is ours alone inside the tunnel; waiting for duplicate detection only delays it.
        if (address.IsIPv4) LinkConfigurator.Ip("-4", "address", "replace", address.ToString(), "dev", interfaceName);
        else LinkConfigurator.Ip("-6", "address", "replace", address.ToString(), "dev", interfaceName, "nodad");
    }

    private static string Family(IpPrefix prefix) => prefix.IsIPv4 ? "-4" : "-6";

    public void SetRoutes(IReadOnlyCollection<IpPrefix> routes) => _routing.Apply(routes);

    /// <summary>Each part on its own: one that keeps failing (a tool set disable_ipv6 on the interface) stops none of the others.</summary>
    public IReadOnlyList<string> Reassert()
    {
        var corrected = new List<string>();
        var problems = new List<string>();
        foreach (var part in new Func<IReadOnlyList<string>>[] { ReassertInterface, _routing.Reassert })
        {
            try { corrected.AddRange(part()); }
            catch (IOException e) { problems.Add(e.Message); }
        }
        if (problems.Count == 0) return corrected;
        throw new IOException(string.Join("; ", problems) + (corrected.Count > 0 ? "; corrected meanwhile: " + string.Join("; ", corrected) : ""));
    }

    /// <summary>
    /// Puts back what <see cref="Up"/> and <see cref="SetAddresses"/> set and the kernel takes away with the link: another
    /// program that sets the interface down (and up again: a network manager re-applying its settings, an admin) takes
    /// every route through it, the tailnet ranges' among them, and its IPv6 addresses. Without them the tailnet's traffic
    /// would follow the machine's default route out of the tunnel, for as long as the agent runs.
    /// </summary>
    private List<string> ReassertInterface()
    {
        var corrected = new List<string>();
        if (!LinkShow.IsUp(LinkConfigurator.Ip("-o", "link", "show", "dev", interfaceName)))
        {
            LinkConfigurator.Ip("link", "set", "dev", interfaceName, "up");
            corrected.Add($"{interfaceName} was down: set up");
        }
        var held = LinkShow.Addresses(LinkConfigurator.Ip("-o", "address", "show", "dev", interfaceName));
        foreach (var missing in _addresses.Where(a => !held.Contains(a)))
        {
            AddAddress(missing);
            corrected.Add($"address {missing} was gone: added");
        }
        foreach (var range in TailnetRanges)
        {
            if (LinkShow.RouteDestinations(Family(range), LinkConfigurator.Ip(Family(range), "route", "show", "dev", interfaceName)).Contains(range)) continue;
            LinkConfigurator.Ip(Family(range), "route", "replace", range.ToString(), "dev", interfaceName);
            corrected.Add($"route {range} was gone: added");
        }
        return corrected;
    }

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
