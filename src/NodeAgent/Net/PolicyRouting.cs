using System.Net.Sockets;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Net;

/// <summary>
/// Routes for peers' subnets and the chosen exit node, in a table of their own, as wg-quick and
/// Tailscale do on Linux. Three rules (IPv4 and IPv6) decide the order:
/// <list type="bullet">
/// <item>5710: the agent's own sockets (marked <see cref="BypassMark"/>: WireGuard's UDP, the control stream) use the main table, so they never loop into the tunnel;</item>
/// <item>5730: the main table, except its default route, so the machine's own networks stay reachable directly;</item>
/// <item>5770: table 5746, the tailnet's routes (and the default route through the exit node).</item>
/// </list>
/// The table, the priorities and the mark are not Tailscale's (52; 5210-5270; 0x80000), so that both
/// can run on one machine, as during a move from one to the other.
/// Nothing is touched until there is a route to install; the rules go when the agent stops (the
/// routes go with the interface). Another program may take them away while the agent runs
/// (systemd-networkd deletes rules it did not make when it restarts; <c>ip rule flush</c>): <see cref="Reassert"/>
/// puts them back, as Tailscale does. Without rule 5770, an exit node's client would send its internet
/// traffic out of the machine's own default route. A route the kernel refused (the interface briefly
/// down, an <c>ip</c> that timed out) is wanted all the same, and <see cref="Reassert"/> keeps trying it.
/// </summary>
/// <param name="ip">Runs <c>ip</c> with the arguments and returns its output (tests stand in for the kernel).</param>
public sealed class PolicyRouting(string interfaceName, Func<string[], string>? ip = null) : IDisposable
{
    public const int Table = 5746;
    public const uint BypassMark = 0x57460000, BypassMask = 0xffff0000;
    private const int SolSocket = 1, SoMark = 36;

    private static readonly string[] RulePreferences = ["5710", "5730", "5770"];

    private readonly Func<string[], string> _ip = ip ?? LinkConfigurator.Ip;
    private readonly HashSet<IpPrefix> _installed = [];
    private HashSet<IpPrefix> _wanted = [];
    private bool _rules;
    /// <summary>The families the rules went in for (no IPv6 on the machine: IPv4 alone).</summary>
    private readonly HashSet<string> _ruleFamilies = [];

    public IReadOnlyCollection<IpPrefix> Installed => _installed;

    /// <summary>
    /// Makes the table hold exactly <paramref name="routes"/> through the interface. Every route is tried,
    /// whichever failed before it (an exit node's default route must not wait on a subnet route the kernel
    /// refused); an <see cref="IOException"/> then names those still missing, which <see cref="Reassert"/> tries again.
    /// </summary>
    public void Apply(IReadOnlyCollection<IpPrefix> routes)
    {
        _wanted = [.. routes];
        if (routes.Count > 0 && !_rules) AddRules();
        foreach (var gone in _installed.Except(routes).ToList())
        {
            TryIp(Family(gone), "route", "del", gone.ToString(), "dev", interfaceName, "table", Table.ToString());
            _installed.Remove(gone);
        }
        var refused = InstallMissing(routes.Except(_installed), []);
        if (refused.Count > 0) throw new IOException("routes not installed yet (tried again every recheck): " + string.Join("; ", refused));
    }

    /// <summary>Installs each of <paramref name="routes"/>, noting it in <paramref name="putBack"/>; returns those the kernel refused, with why.</summary>
    private List<string> InstallMissing(IEnumerable<IpPrefix> routes, List<string> putBack)
    {
        var refused = new List<string>();
        foreach (var route in routes.ToList())
        {
            try
            {
                _ip([Family(route), "route", "replace", route.ToString(), "dev", interfaceName, "table", Table.ToString()]);
                _installed.Add(route);
                putBack.Add($"route {route} (table {Table})");
            }
            catch (IOException e)
            {
                refused.Add($"{route}: {e.Message}");
            }
        }
        return refused;
    }

    private void AddRules()
    {
        foreach (var family in new[] { "-4", "-6" })
        {
            try
            {
                AddRules(family);
                _ruleFamilies.Add(family);
            }
            catch (IOException) when (family == "-6")
            {
                // No IPv6 on this machine: IPv4 routing alone.
            }
        }
        _rules = true;
    }

    private void AddRules(string family)
    {
        RemoveRules(family);
        _ip([family, "rule", "add", "pref", "5710", "fwmark", $"0x{BypassMark:x}/0x{BypassMask:x}", "table", "main"]);
        _ip([family, "rule", "add", "pref", "5730", "table", "main", "suppress_prefixlength", "0"]);
        _ip([family, "rule", "add", "pref", "5770", "table", Table.ToString()]);
    }

    /// <summary>
    /// Puts back the rules and the wanted routes that are not in the kernel: another program took them, or
    /// the kernel refused them when they were applied. Takes out of the table the routes no longer wanted
    /// that are still in it (a delete the kernel refused, or one <c>ip</c> timed out on: a withdrawn exit
    /// node's default route would otherwise send the internet into the tunnel for good). Returns what it
    /// corrected, for the log: empty when everything was in place. An <see cref="IOException"/> names what
    /// is still wrong (and what was corrected).
    /// </summary>
    public IReadOnlyList<string> Reassert()
    {
        if (_wanted.Count > 0 && !_rules) AddRules();
        if (!_rules) return [];
        var putBack = new List<string>();
        foreach (var family in _ruleFamilies)
        {
            var present = _ip([family, "rule", "show"]).Split('\n').Select(line => line.Split(':')[0].Trim()).ToHashSet();
            if (RulePreferences.All(present.Contains)) continue;
            AddRules(family);
            putBack.Add($"ip {family} rules {string.Join(", ", RulePreferences.Where(p => !present.Contains(p)))}");
        }
        var refused = new List<string>();
        foreach (var family in _wanted.Select(Family).Union(_ruleFamilies).ToList())
        {
            var present = LinkShow.RouteDestinations(family, _ip([family, "route", "show", "table", Table.ToString()]));
            foreach (var stray in present.Where(r => !_wanted.Contains(r)))
            {
                if (TryIp(family, "route", "del", stray.ToString(), "table", Table.ToString())) putBack.Add($"route {stray} taken out (table {Table})");
                else refused.Add($"{stray}: no longer wanted, and the kernel refused to take it out");
            }
            refused.AddRange(InstallMissing(_wanted.Where(r => Family(r) == family && !present.Contains(r)), putBack));
        }
        if (refused.Count > 0)
            throw new IOException($"routes still not as wanted: {string.Join("; ", refused)}" + (putBack.Count > 0 ? $" (corrected: {string.Join("; ", putBack)})" : ""));
        return putBack;
    }

    private void RemoveRules(string family)
    {
        foreach (var pref in RulePreferences)
            while (TryIp(family, "rule", "del", "pref", pref)) { }
    }

    private bool TryIp(params string[] arguments)
    {
        try
        {
            _ip(arguments);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static string Family(IpPrefix prefix) => prefix.IsIPv4 ? "-4" : "-6";

    /// <summary>Marks a socket of the agent's own so that its traffic bypasses the tailnet's routes (needs CAP_NET_ADMIN; without it, nothing to bypass).</summary>
    public static void MarkBypass(Socket socket)
    {
        try
        {
            socket.SetRawSocketOption(SolSocket, SoMark, BitConverter.GetBytes(BypassMark));
        }
        catch (SocketException)
        {
            // Not permitted (not root): such an agent installs no routes either.
        }
    }

    public void Dispose()
    {
        if (!_rules) return;
        RemoveRules("-4");
        RemoveRules("-6");
        TryIp("-4", "route", "flush", "table", Table.ToString());
        TryIp("-6", "route", "flush", "table", Table.ToString());
        _rules = false;
        _ruleFamilies.Clear();
        _installed.Clear();
        _wanted = [];
    }
}

/// <summary>
/// A subnet router or exit node: it forwards what arrives through the tunnel for its routes, and by
/// default masquerades it (traffic from the tailnet leaves with the router's own address, so the
/// LAN needs no route back), as <c>--snat-subnet-routes</c> in Tailscale. An nftables table of its
/// own (<c>weft-&lt;interface&gt;</c>) holds the rule, removed when the agent stops. IP forwarding is
/// switched on, as Tailscale's documentation asks its users to; it is left on afterwards.
/// </summary>
public sealed class SubnetRouter : IDisposable
{
    private readonly string _table;
    private readonly string _interfaceName;

    private SubnetRouter(string interfaceName)
    {
        _interfaceName = interfaceName;
        _table = "weft-" + interfaceName;
    }

    public bool Masquerades { get; private init; }

    public static SubnetRouter Start(string interfaceName, bool masquerade)
    {
        File.WriteAllText("/proc/sys/net/ipv4/ip_forward", "1");
        try
        {
            File.WriteAllText("/proc/sys/net/ipv6/conf/all/forwarding", "1");
        }
        catch (IOException)
        {
            // No IPv6 here.
        }
        var router = new SubnetRouter(interfaceName) { Masquerades = masquerade };
        router.RemoveTable();
        if (masquerade) router.AddTable();
        return router;
    }

    private void AddTable() => Nft($$"""
        table inet {{_table}} {
          chain postrouting {
            type nat hook postrouting priority srcnat; policy accept;
            oifname != "{{_interfaceName}}" ip saddr 100.64.0.0/10 masquerade
            oifname != "{{_interfaceName}}" ip6 saddr fd7a:115c:a1e0::/48 masquerade
          }
        }
        """, "-f", "-");

    /// <summary>
    /// Puts the masquerading table back if it is gone (an <c>nftables.service</c> reload starts with
    /// <c>flush ruleset</c>): without it the LAN sees tailnet source addresses it cannot answer. True if it did.
    /// </summary>
    public bool Reassert()
    {
        if (!Masquerades) return false;
        try
        {
            Nft(null, "list", "table", "inet", _table);
            return false;
        }
        catch (IOException)
        {
            AddTable();
            return true;
        }
    }

    private void RemoveTable()
    {
        try
        {
            Nft(null, "delete", "table", "inet", _table);
        }
        catch (IOException)
        {
            // Not there.
        }
    }

    private static string Nft(string? input, params string[] arguments) => LinkConfigurator.Run("nft", "nftables", input, arguments);

    public void Dispose() => RemoveTable();
}
