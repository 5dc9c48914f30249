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

    public static ImmutableArray<string> Discover(int port, string? tunName, IEnumerable<string> extra)
    {
        var found = new List<IPAddress>();
        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            if (nic.OperationalStatus == OperationalStatus.Down || nic.Name == tunName) continue;
            foreach (var unicast in nic.GetIPProperties().UnicastAddresses) found.Add(unicast.Address);
        }
        return Select(found, port, extra);
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
