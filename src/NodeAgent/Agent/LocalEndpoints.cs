using System.Collections.Immutable;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace Weft.NodeAgent.Agent;

/// <summary>
/// The direct endpoints this agent advertises: every usable address of the machine's interfaces
/// with the WireGuard port. Loopback, link-local, the tailnet's own ranges and the agent's TUN are
/// left out: a peer could never reach us there. (Tailscale's magicsock does the same before it
/// adds STUN-mapped addresses, which come with NAT traversal.)
/// </summary>
public static class LocalEndpoints
{
    private static readonly IPNetwork TailnetV4 = IPNetwork.Parse("100.64.0.0/10");
    private static readonly IPNetwork TailnetV6 = IPNetwork.Parse("fd7a:115c:a1e0::/48");

    /// <summary>The machine's interfaces that are not down, the agent's TUN left out.</summary>
    public static IReadOnlyList<MachineInterface> ReadInterfaces(string? tunName)
    {
        var found = new List<MachineInterface>();
        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            if (nic.OperationalStatus == OperationalStatus.Down || nic.Name == tunName) continue;
            var properties = nic.GetIPProperties();
            found.Add(new MachineInterface(nic.Name, properties.GatewayAddresses.Count > 0, [.. properties.UnicastAddresses.Select(u => u.Address)]));
        }
        return found;
    }

    public static ImmutableArray<string> Discover(int port, IReadOnlyList<MachineInterface> interfaces, IEnumerable<string> extra) =>
        Select(interfaces.SelectMany(i => i.Addresses), port, extra);

    /// <summary>
    /// The network the machine reaches the world through: each interface with a gateway (the default route),
    /// its IPv4 addresses and its IPv6 /64 prefixes (not the addresses: temporary ones rotate within their
    /// prefix every day). When this changes the machine moved (another Wi-Fi, a cable plugged in, a new
    /// DHCP lease), and its NAT mappings, relay connections and paths are stale; addresses coming and going
    /// elsewhere (a container bridge, a VM's network) are only new endpoints. Empty when no interface has a
    /// gateway: there is nothing to judge by.
    /// </summary>
    public static ImmutableArray<string> Attachment(IReadOnlyList<MachineInterface> interfaces) =>
    [
        .. interfaces.Where(i => i.HasGateway).SelectMany(i => i.Addresses.Where(IsAdvertisable).Select(a => $"{i.Name} {Network(a)}").Prepend(i.Name))
            .Distinct().Order(StringComparer.Ordinal),
    ];

    private static string Network(IPAddress address)
    {
        if (address.AddressFamily == AddressFamily.InterNetwork) return address.ToString();
        var bytes = address.GetAddressBytes();
        Array.Clear(bytes, 8, 8);
        return new IPAddress(bytes) + "/64";
    }

    /// <summary>The advertisable endpoints among <paramref name="addresses"/>, IPv4 first, then the static ones, without duplicates.</summary>
    public static ImmutableArray<string> Select(IEnumerable<IPAddress> addresses, int port, IEnumerable<string> extra)
    {
        var usable = addresses.Where(IsAdvertisable)
            .OrderBy(a => a.AddressFamily == AddressFamily.InterNetwork ? 0 : 1)
            .Select(a => new IPEndPoint(a, port).ToString());
        return [.. extra.Concat(usable).Distinct()];
    }

    public static bool IsAdvertisable(IPAddress address)
    {
        if (IPAddress.IsLoopback(address) || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any)) return false;
        if (address.IsIPv6LinkLocal || address.IsIPv6Multicast || address.IsIPv4MappedToIPv6) return false;
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var bytes = address.GetAddressBytes();
            if (bytes[0] == 169 && bytes[1] == 254) return false; // IPv4 link-local
            return !TailnetV4.Contains(address);
        }
        return !TailnetV6.Contains(address);
    }
}

/// <summary>One of the machine's interfaces: its name, whether a route through a gateway uses it, and its addresses.</summary>
public sealed record MachineInterface(string Name, bool HasGateway, IReadOnlyList<IPAddress> Addresses);
