using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;

namespace Weft.Cluster.Policy;

/// <summary>Prefix arithmetic for subnet routes and exit nodes.</summary>
public static class Routing
{
    public static readonly IPNetwork AllIpv4 = IPNetwork.Parse("0.0.0.0/0");
    public static readonly IPNetwork AllIpv6 = IPNetwork.Parse("::/0");
    public static readonly IPNetwork TailnetIpv4 = IPNetwork.Parse("100.64.0.0/10");
    public static readonly IPNetwork TailnetIpv6 = IPNetwork.Parse("fd7a:115c:a1e0::/48");

    /// <summary>
    /// What <c>autogroup:internet</c> opens on an exit node, as Tailscale defines it
    /// (tailscale.com/kb/1396/targets): 0.0.0.0/0 and 2000::/3, without the private ranges
    /// (RFC 1918), the shared range tailnets use (100.64.0.0/10) and link-local (169.254.0.0/16).
    /// </summary>
    public static readonly ImmutableArray<IPNetwork> Internet =
    [
        .. Subtract(AllIpv4, [.. new[] { "10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16" }
            .Select(IPNetwork.Parse)]),
        IPNetwork.Parse("2000::/3"),
    ];

    /// <summary>The routes an exit node advertises: every address of each family.</summary>
    public static bool IsExitRoute(IPNetwork route) => route.PrefixLength == 0;

    /// <summary>Is <paramref name="inner"/> inside <paramref name="outer"/> (equal counts)?</summary>
    public static bool Within(IPNetwork inner, IPNetwork outer) =>
        inner.BaseAddress.AddressFamily == outer.BaseAddress.AddressFamily && inner.PrefixLength >= outer.PrefixLength && outer.Contains(inner.BaseAddress);

    /// <summary>The addresses two prefixes share (the narrower one), or null when they share none.</summary>
    public static IPNetwork? Overlap(IPNetwork a, IPNetwork b) => Within(a, b) ? a : Within(b, a) ? b : null;

    public static bool ReachesInternet(IPNetwork prefix) => Internet.Any(i => Overlap(i, prefix) is not null);

    /// <summary>The part of <paramref name="prefix"/> that is internet (as prefixes).</summary>
    public static IEnumerable<IPNetwork> InternetPart(IPNetwork prefix) => Internet.Select(i => Overlap(i, prefix)).OfType<IPNetwork>();

    /// <summary>The prefixes covering <paramref name="whole"/> without any of <paramref name="holes"/>.</summary>
    public static IEnumerable<IPNetwork> Subtract(IPNetwork whole, IReadOnlyList<IPNetwork> holes)
    {
        if (holes.Any(h => Within(whole, h))) yield break;
        if (!holes.Any(h => Within(h, whole)))
        {
            yield return whole;
            yield break;
        }
        var (low, high) = Halves(whole);
        foreach (var part in Subtract(low, holes)) yield return part;
        foreach (var part in Subtract(high, holes)) yield return part;
    }

    private static (IPNetwork Low, IPNetwork High) Halves(IPNetwork network)
    {
        var bytes = network.BaseAddress.GetAddressBytes();
        var length = network.PrefixLength + 1;
        var high = (byte[])bytes.Clone();
        high[network.PrefixLength / 8] |= (byte)(0x80 >> (network.PrefixLength % 8));
        return (new IPNetwork(new IPAddress(bytes), length), new IPNetwork(new IPAddress(high), length));
    }

    /// <summary>The canonical text of a route (as IPNetwork prints it).</summary>
    public static string Text(IPNetwork route) => route.ToString();

    public static bool IsIpv4(IPNetwork route) => route.BaseAddress.AddressFamily == AddressFamily.InterNetwork;
}
