using System.Collections.Immutable;
using System.Net;

namespace Weft.Cluster.Policy;

// A parsed, validated tailnet policy (Tailscale's format and meaning). Everything here is
// immutable and free of devices: the PolicyEngine applies it to the tailnet's devices.

/// <summary>
/// What an alias is matched against: a device, or the identity a policy test names. A device that
/// routes also stands for its approved subnet <see cref="Routes"/> and, as an exit node, for the
/// internet: an address alias that overlaps them matches the router.
/// </summary>
public sealed record Principal(string? User, ImmutableArray<string> Tags, ImmutableArray<IPNetwork> Prefixes,
    ImmutableArray<IPNetwork> Routes = default, bool ExitNode = false)
{
    public bool IsTagged => !Tags.IsDefaultOrEmpty;

    public ImmutableArray<IPNetwork> SubnetRoutes => Routes.IsDefault ? [] : Routes;

    /// <summary>A device's facts: untagged devices belong to their user; tagged ones to their tags.</summary>
    public static Principal OfDevice(string? user, ImmutableArray<string> tags, params string[] addresses) =>
        new(tags.IsDefaultOrEmpty ? user : null, tags.IsDefault ? [] : tags,
            [.. addresses.Select(a => IPAddress.Parse(a)).Select(a => new IPNetwork(a, a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128))]);
}

/// <summary>A name for a set of sources or destinations, as written in <c>src</c> and <c>dst</c>.</summary>
public abstract record Alias(string Text)
{
    public abstract bool Matches(Principal principal);

    /// <summary>Matches by the principal's own identity and addresses, leaving out the routes it carries for others.</summary>
    public virtual bool MatchesItself(Principal principal) => Matches(principal);

    /// <summary>Does this target take in (part of) <paramref name="route"/>, as a destination routed through a router?</summary>
    public virtual bool Covers(IPNetwork route) => false;

    public override string ToString() => Text;
}

/// <summary><c>*</c>: every device (and, as a source, any address).</summary>
public sealed record AnyAlias() : Alias("*")
{
    public override bool Matches(Principal principal) => true;

    public override bool Covers(IPNetwork route) => true;
}

/// <summary>A user's untagged devices.</summary>
public sealed record UserAlias(string User) : Alias(User)
{
    public override bool Matches(Principal principal) => principal.User is { } user && string.Equals(user, User, StringComparison.OrdinalIgnoreCase);
}

/// <summary>The untagged devices of every user in the group (members resolved when the policy was parsed).</summary>
public sealed record GroupAlias(string Group, ImmutableArray<string> Users) : Alias(Group)
{
    private readonly HashSet<string> _members = new(Users, StringComparer.OrdinalIgnoreCase);

    public override bool Matches(Principal principal) => principal.User is { } user && _members.Contains(user);
}

public sealed record TagAlias(string Tag) : Alias(Tag)
{
    public override bool Matches(Principal principal) => principal.Tags.Contains(Tag);
}

/// <summary>An address range: a literal IP or CIDR, or a name from <c>hosts</c>.</summary>
public sealed record PrefixAlias(string Name, IPNetwork Prefix) : Alias(Name)
{
    public override bool Matches(Principal principal) =>
        MatchesItself(principal)
        || principal.SubnetRoutes.Any(r => Routing.Overlap(r, Prefix) is not null)
        || principal.ExitNode && Routing.ReachesInternet(Prefix);

    public override bool MatchesItself(Principal principal) => principal.Prefixes.Any(p => Routing.Within(p, Prefix));

    public override bool Covers(IPNetwork route) => Routing.IsExitRoute(route) ? Routing.ReachesInternet(Prefix) : Routing.Overlap(route, Prefix) is not null;
}

/// <summary>
/// <c>autogroup:internet</c> (destinations only): the internet through exit nodes. It matches the
/// exit nodes, and opens on them the public address space, never the tailnet or private ranges.
/// </summary>
public sealed record InternetAlias() : Alias("autogroup:internet")
{
    public override bool Matches(Principal principal) => principal.ExitNode || MatchesItself(principal);

    public override bool MatchesItself(Principal principal) => principal.Prefixes.Any(p => Routing.Internet.Any(i => Routing.Within(p, i)));

    public override bool Covers(IPNetwork route) => Routing.IsExitRoute(route);
}

/// <summary><c>autogroup:member</c>: every device owned by a user (not tagged).</summary>
public sealed record MemberAlias() : Alias("autogroup:member")
{
    public override bool Matches(Principal principal) => principal.User is not null;
}

/// <summary><c>autogroup:tagged</c>: every tagged device.</summary>
public sealed record TaggedAlias() : Alias("autogroup:tagged")
{
    public override bool Matches(Principal principal) => principal.IsTagged;
}

/// <summary><c>autogroup:self</c> (destinations only): the source user's own untagged devices.</summary>
public sealed record SelfAlias() : Alias("autogroup:self")
{
    public override bool Matches(Principal principal) => principal.User is not null;
}

public readonly record struct PortRange(int First, int Last)
{
    public static readonly PortRange All = new(0, 65535);

    public bool Contains(int port) => port >= First && port <= Last;

    public override string ToString() => First == Last ? First.ToString() : First == 0 && Last == 65535 ? "*" : $"{First}-{Last}";
}

/// <summary>One <c>dst</c> entry: a target and its ports.</summary>
public sealed record Destination(Alias Target, ImmutableArray<PortRange> Ports, string Text)
{
    /// <summary>
    /// A grant's <c>via</c>: the tags of the routers that may carry this destination's routed traffic
    /// (subnet routes, the internet through exit nodes). Empty: any approved router may.
    /// </summary>
    public ImmutableArray<string> Via { get; init; } = [];

    public bool AllowsPort(int port) => Ports.Any(p => p.Contains(port));

    /// <summary>Is the device a destination: itself, or a router whose routes it takes in (with via, a router with a via tag).</summary>
    public bool Matches(Principal principal) =>
        Via.IsEmpty ? Target.Matches(principal) : Target.MatchesItself(principal) || CarriedBy(principal) && Target.Matches(principal);

    /// <summary>May this router carry the destination's routed traffic?</summary>
    public bool CarriedBy(Principal router) => Via.IsEmpty || router.Tags.Any(Via.Contains);
}

/// <summary>
/// One access rule: an <c>acls</c> entry, or one protocol's part of a <c>grants</c> entry (named by
/// <see cref="Origin"/>, for example <c>acls[2]</c> or <c>grants[0]</c>). <see cref="Protocols"/>
/// empty means the default: TCP, UDP, ICMP and ICMPv6.
/// </summary>
public sealed record AccessRule(int Index, ImmutableArray<Alias> Sources, ImmutableArray<Destination> Destinations, ImmutableArray<int> Protocols, string Origin = "")
{
    public static readonly ImmutableArray<int> DefaultProtocols = [IpProtocols.Tcp, IpProtocols.Udp, IpProtocols.Icmp, IpProtocols.IcmpV6];

    public ImmutableArray<int> EffectiveProtocols => Protocols.IsDefaultOrEmpty ? DefaultProtocols : Protocols;

    /// <summary>
    /// A stable text form: two rules with the same key compile to the same thing. A name is spelled out as
    /// what it stands for when the policy was parsed (a group's or a role's members, a host's address), on
    /// both sides: a policy that changes only who <c>group:servers</c> is, as a destination, must not keep
    /// the rule compiled for its old members. A destination's text carries its ports and a grant's via tags.
    /// </summary>
    public string Key => $"{string.Join(",", Sources.Select(Meaning))}"
        + $" -> {string.Join(",", Destinations.Select(d => $"{Meaning(d.Target)} {d.Text}"))}"
        + $" proto {string.Join(",", Protocols)}";

    private static string Meaning(Alias alias) => alias switch
    {
        GroupAlias group => group.Group + "=" + string.Join("+", group.Users),
        PrefixAlias prefix => prefix.Name + "=" + prefix.Prefix,
        _ => alias.Text,
    };
}

/// <summary>One <c>tests</c> entry, checked on every save.</summary>
public sealed record PolicyTest(int Index, string Source, string? Protocol, ImmutableArray<string> Accept, ImmutableArray<string> Deny, int Line, int Column);

/// <summary>
/// <c>autoApprovers</c>: who may have routes and exit nodes approved without an admin. A route is
/// approved when an entry for it or for a wider prefix lists the advertising device (its user, a
/// group of its user, or one of its tags).
/// </summary>
public sealed record AutoApprovers(ImmutableArray<(IPNetwork Prefix, ImmutableArray<Alias> Approvers)> Routes, ImmutableArray<Alias> ExitNode)
{
    public static readonly AutoApprovers None = new([], []);

    public bool ApprovesRoute(IPNetwork route, Principal device) =>
        Routes.Any(entry => Routing.Within(route, entry.Prefix) && entry.Approvers.Any(a => a.Matches(device)));

    public bool ApprovesExitNode(Principal device) => ExitNode.Any(a => a.Matches(device));
}

public sealed record TailnetPolicy(
    ImmutableSortedDictionary<string, ImmutableArray<string>> Groups,
    ImmutableSortedDictionary<string, ImmutableArray<string>> TagOwners,
    ImmutableSortedDictionary<string, IPNetwork> Hosts,
    ImmutableArray<AccessRule> Rules,
    ImmutableArray<PolicyTest> Tests)
{
    public AutoApprovers AutoApprovers { get; init; } = AutoApprovers.None;

    private bool? _hasVia;

    /// <summary>Does a grant send some routed traffic through chosen routers only (<c>via</c>)?</summary>
    public bool HasVia => _hasVia ??= Rules.Any(r => r.Destinations.Any(d => !d.Via.IsEmpty));

    /// <summary>What a new tailnet gets, as Tailscale does: every device may reach every other.</summary>
    public const string DefaultText = """
        // Weft's default policy, as Tailscale's: every device may reach every other on any port.
        {
          "acls": [
            { "action": "accept", "src": ["*"], "dst": ["*:*"] },
          ],
        }
        """;
}

public static class IpProtocols
{
    public const int Icmp = 1, Igmp = 2, IpInIp = 4, Tcp = 6, Egp = 8, Igp = 9, Udp = 17, Gre = 47, Esp = 50, Ah = 51, IcmpV6 = 58, Sctp = 132;

    /// <summary>Tailscale's protocol names; "icmp" covers ICMP over IPv4 and IPv6.</summary>
    public static readonly IReadOnlyDictionary<string, int[]> ByName = new Dictionary<string, int[]>(StringComparer.OrdinalIgnoreCase)
    {
        ["icmp"] = [Icmp, IcmpV6], ["igmp"] = [Igmp], ["ipv4"] = [IpInIp], ["ip-in-ip"] = [IpInIp], ["tcp"] = [Tcp], ["egp"] = [Egp],
        ["igp"] = [Igp], ["udp"] = [Udp], ["gre"] = [Gre], ["esp"] = [Esp], ["ah"] = [Ah], ["ipv6-icmp"] = [IcmpV6], ["icmpv6"] = [IcmpV6],
        ["sctp"] = [Sctp],
    };

    /// <summary>Protocols whose packets carry ports; rules for the others must use <c>*</c>.</summary>
    public static bool HasPorts(int protocol) => protocol is Tcp or Udp or Sctp;
}
