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

    [Fact]
    public void A_route_the_kernel_would_not_take_out_is_taken_out_at_the_next_recheck()
    {
        // The exit node is withdrawn, and deleting its default route fails (an `ip` that timed out): left in
        // table 5746, it would send all internet traffic into the tunnel, where no peer takes it.
        var kernel = new PlayedKernel { RefuseDeletes = { [Internet] = 1 } };
        using var routing = new PolicyRouting("weft0", kernel.Ip);
        routing.Apply([Internet, Lan]);

        routing.Apply([Lan]);
        Assert.Equal([Internet, Lan], kernel.Routes.OrderBy(r => r.Length));
        Assert.Equal(["route 0.0.0.0/0 taken out (table 5746)"], routing.Reassert());
        Assert.Equal([Lan], kernel.Routes);
        Assert.Empty(routing.Reassert());

        // Nothing wanted at all any more, and the delete fails again: the recheck still takes it out.
        kernel.RefuseDeletes[Lan] = 1;
        routing.Apply([]);
        Assert.Equal([Lan], kernel.Routes);
        Assert.Equal(["route 198.18.50.0/24 taken out (table 5746)"], routing.Reassert());
        Assert.Empty(kernel.Routes);
    }

    /// <summary>
    /// The rules and table 5746 as <c>ip</c> would show and change them; a route in <see cref="RefuseTimes"/> is
    /// refused that many times, and one in <see cref="RefuseDeletes"/> is not taken out that many times.
    /// </summary>
    private sealed class PlayedKernel
    {
        public List<(string Family, string Preference)> Rules { get; } = [];

        public List<IpPrefix> Routes { get; } = [];

        public Dictionary<IpPrefix, int> RefuseTimes { get; } = [];

        public Dictionary<IpPrefix, int> RefuseDeletes { get; } = [];

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
                    var gone = IpPrefix.Parse(arguments[3]);
                    if (RefuseDeletes.TryGetValue(gone, out var left) && left > 0)
                    {
                        RefuseDeletes[gone] = left - 1;
                        throw new IOException("ip timed out after 30 s");
                    }
                    Routes.Remove(gone);
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
