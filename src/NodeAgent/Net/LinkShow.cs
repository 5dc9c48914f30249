using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Net;

/// <summary>What <c>ip</c> prints about an interface and its routes, as the agent checks them against what it set.</summary>
public static class LinkShow
{
    /// <summary>Whether <c>ip -o link show</c>'s line has UP among its flags (<c>&lt;POINTOPOINT,NOARP,UP,LOWER_UP&gt;</c>).</summary>
    public static bool IsUp(string linkShow)
    {
        var open = linkShow.IndexOf('<');
        var close = open < 0 ? -1 : linkShow.IndexOf('>', open);
        return close > open && linkShow[(open + 1)..close].Split(',').Contains("UP");
    }

    /// <summary>The addresses in <c>ip -o address show</c>'s lines (<c>… inet 100.64.0.7/32 scope global …</c>).</summary>
    public static HashSet<IpPrefix> Addresses(string addressShow)
    {
        var addresses = new HashSet<IpPrefix>();
        foreach (var line in addressShow.Split('\n'))
        {
            var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var at = Array.FindIndex(words, w => w is "inet" or "inet6");
            if (at >= 0 && at + 1 < words.Length && IpPrefix.TryParse(words[at + 1], out var address)) addresses.Add(address);
        }
        return addresses;
    }

    /// <summary>
    /// The destinations of <c>ip route show</c>'s lines for <paramref name="family"/> (<c>-4</c> or <c>-6</c>): each line
    /// starts with one, <c>default</c> standing for the family's whole range and a bare address for itself alone.
    /// </summary>
    public static HashSet<IpPrefix> RouteDestinations(string family, string routeShow)
    {
        var destinations = new HashSet<IpPrefix>();
        foreach (var line in routeShow.Split('\n'))
        {
            var first = line.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
            if (first is null) continue;
            if (first == "default") first = family == "-4" ? "0.0.0.0/0" : "::/0";
            if (IpPrefix.TryParse(first, out var destination)) destinations.Add(destination);
        }
        return destinations;
    }
}
