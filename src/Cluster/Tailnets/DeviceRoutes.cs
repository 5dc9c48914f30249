using System.Collections.Immutable;
using System.Net;
using Weft.Cluster.Persistence;
using Weft.Cluster.Policy;
using Weft.Contracts.Control;

namespace Weft.Cluster.Tailnets;

/// <summary>What makes a device's route list valid (advertised by its agent, or approved by an admin).</summary>
public static class DeviceRoutes
{
    public const int MaxRoutes = 256;

    /// <summary>An exit node advertises both: every IPv4 and every IPv6 address.</summary>
    public static readonly ImmutableArray<string> ExitRoutes = ExitRoute.Prefixes;

    public static bool IsExit(string route) => ExitRoute.Is(route);

    /// <summary>The routes in canonical text, sorted and distinct; or why they are refused.</summary>
    public static Rejection? Check(IEnumerable<string> routes, out ImmutableArray<string> canonical)
    {
        canonical = [];
        var list = new List<string>();
        foreach (var text in routes)
        {
            if (list.Count >= MaxRoutes) return Rejection.Invalid($"at most {MaxRoutes} routes");
            if (!IpLiteral.TryParsePrefix(text, out var prefix))
                return Rejection.Invalid($"route '{Shorten(text)}' is not a CIDR prefix that names its network (for example 198.51.100.0/24)");
            if (!Routing.IsExitRoute(prefix) && (Routing.Overlap(prefix, Routing.TailnetIpv4) is not null || Routing.Overlap(prefix, Routing.TailnetIpv6) is not null))
                return Rejection.Invalid($"route {prefix} overlaps the tailnet's own addresses ({Routing.TailnetIpv4}, {Routing.TailnetIpv6})");
            list.Add(Routing.Text(prefix));
        }
        var exits = list.Count(IsExit);
        if (exits == 1) return Rejection.Invalid("an exit node routes both 0.0.0.0/0 and ::/0: give both, or neither");
        canonical = [.. list.Distinct(StringComparer.Ordinal).OrderBy(r => r, StringComparer.Ordinal)];
        return null;
    }

    public static ImmutableArray<IPNetwork> Prefixes(IEnumerable<string> routes) => [.. routes.Select(IPNetwork.Parse)];

    private static string Shorten(string value) => value.Length <= 60 ? value : value[..57] + "...";
}
