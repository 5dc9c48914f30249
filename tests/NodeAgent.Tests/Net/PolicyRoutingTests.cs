using Weft.NodeAgent.Net;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Net;

/// <summary>
/// The routing table's bookkeeping against a kernel the test plays (the real kernel's rules and routes,
/// taken away and put back, are the routing lab's, which runs as root): a route the kernel refuses
/// does not stop the others, and is tried again at each recheck until it is in.
/// </summary>
public class PolicyRoutingTests
{
    private static readonly IpPrefix Internet = IpPrefix.Parse("0.0.0.0/0");
    private static readonly IpPrefix Lan = IpPrefix.Parse("198.18.50.0/24");

    [Fact]
    public void A_route_the_kernel_refuses_is_wanted_all_the_same_the_others_go_in_and_each_recheck_tries_it_until_it_is_in()
    {
        // The exit node's default route is refused twice (the interface was down a moment, an `ip` timed out).
        var kernel = new PlayedKernel { RefuseTimes = { [Internet] = 2 } };
        using var routing = new PolicyRouting("weft0", kernel.Ip);

        var refused = Assert.Throws<IOException>(() => routing.Apply([Internet, Lan]));
        Assert.Contains("0.0.0.0/0", refused.Message);
        Assert.Equal([Lan], kernel.Routes);
        Assert.Equal(["5710", "5730", "5770"], kernel.Rules.Where(r => r.Family == "-4").Select(r => r.Preference));

        var stillRefused = Assert.Throws<IOException>(() => routing.Reassert());
        Assert.Contains("0.0.0.0/0", stillRefused.Message);
        Assert.Equal(["route 0.0.0.0/0 (table 5746)"], routing.Reassert());
        Assert.Equal([Internet, Lan], kernel.Routes.OrderBy(r => r.Length));
        Assert.Empty(routing.Reassert());

        // A route no longer wanted is neither kept nor put back.
        routing.Apply([Lan]);
        kernel.Routes.Clear();
        Assert.Equal(["route 198.18.50.0/24 (table 5746)"], routing.Reassert());
        Assert.Equal([Lan], kernel.Routes);
    }

    /// <summary>The rules and table 5746 as <c>ip</c> would show and change them; a route in <see cref="RefuseTimes"/> is refused that many times.</summary>
    private sealed class PlayedKernel
    {
        public List<(string Family, string Preference)> Rules { get; } = [];

        public List<IpPrefix> Routes { get; } = [];

        public Dictionary<IpPrefix, int> RefuseTimes { get; } = [];

        public string Ip(string[] arguments)
        {
            var family = arguments[0];
            switch (arguments[1], arguments[2])
            {
                case ("rule", "add"):
                    Rules.Add((family, arguments[4]));
                    return "";
                case ("rule", "del"):
                    if (Rules.Remove((family, arguments[4]))) return "";
                    throw new IOException("RTNETLINK answers: No such file or directory");
                case ("rule", "show"):
                    return string.Join("\n", Rules.Where(r => r.Family == family).Select(r => $"{r.Preference}:\tfrom all lookup 5746"));
                case ("route", "replace"):
                    var route = IpPrefix.Parse(arguments[3]);
                    if (RefuseTimes.TryGetValue(route, out var times) && times > 0)
                    {
                        RefuseTimes[route] = times - 1;
                        throw new IOException("RTNETLINK answers: Network is down");
                    }
                    if (!Routes.Contains(route)) Routes.Add(route);
                    return "";
                case ("route", "del"):
                    Routes.Remove(IpPrefix.Parse(arguments[3]));
                    return "";
                case ("route", "show"):
                    return string.Join("\n", Routes.Where(r => r.IsIPv4 == (family == "-4"))
                        .Select(r => (r.Length == 0 ? "default" : r.ToString()) + " dev weft0 scope link"));
                case ("route", "flush"):
                    Routes.Clear();
                    return "";
                default:
                    throw new InvalidOperationException("unexpected ip " + string.Join(' ', arguments));
            }
        }
    }
}
