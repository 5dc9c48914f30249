using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Weft.Contracts.Control;

namespace Weft.Cluster.Policy;

/// <summary>A problem in a policy: where it is (line, column and the JSON path) and what is wrong.</summary>
public sealed record PolicyIssue(int Line, int Column, string Path, string Message)
{
    public override string ToString() => $"line {Line}, column {Column} ({Path}): {Message}";
}

public sealed record PolicyParseResult(TailnetPolicy? Policy, ImmutableArray<PolicyIssue> Issues)
{
    public bool IsValid => Policy is not null && Issues.IsEmpty;

    /// <summary>What the policy holds that Weft reads past (sections that grant nothing here): it applies without them.</summary>
    public ImmutableArray<PolicyIssue> Warnings { get; init; } = [];
}

/// <summary>
/// Reads a Tailscale-format policy (HuJSON) into a <see cref="TailnetPolicy"/>, checking every name
/// it uses. It reports every problem it finds, each with its location, rather than the first only.
/// Parts of Tailscale's format that Weft does not implement are errors that say so.
/// </summary>
public sealed partial class PolicyParser
{
    public const int MaxIssues = 50;

    /// <summary>
    /// The most rule entries a policy may compile to: every source (a group counts as its members)
    /// and every destination of every rule. Compiling costs about this times the tailnet's devices /
    /// 64, so this bounds the CPU one policy edit can take (about a second on a 5,000-device tailnet),
    /// before it can hold the tailnet busy.
    /// </summary>
    public const int MaxRuleEntries = 100_000;

    /// <summary>
    /// Sections that restrict or name access in ways Weft cannot honour: a policy with one is refused, since
    /// applying it without them would let through what the operator meant to hold back (postures) or
    /// leave rules without the names they use (ipsets).
    /// </summary>
    private static readonly HashSet<string> NotSupportedSections = new(StringComparer.Ordinal)
    {
        "postures", "defaultSrcPosture", "ipsets", "attrs", "onePasswordCapabilities",
    };

    /// <summary>
    /// Sections that configure what Weft does not have, and so grant nothing here: Tailscale SSH (its
    /// default policy has an <c>ssh</c> block), node attributes, and client and relay settings. A new
    /// policy with one is still refused, but a stored one is read past them, each named in a warning: a
    /// later version may accept such policies, and a node of this version (in a rolling upgrade, or
    /// after a rollback) must still enforce them rather than fail closed. Accepting them comes after.
    /// </summary>
    private static readonly Dictionary<string, string> IgnoredSections = new(StringComparer.Ordinal)
    {
        ["ssh"] = "Weft has no Tailscale SSH server, so its rules grant nothing here",
        ["sshTests"] = "Weft has no Tailscale SSH server, so there is nothing to test",
        ["nodeAttrs"] = "node attributes are not given to devices by Weft",
        ["randomizeClientPort"] = "agents choose their own ports",
        ["disableIPv4"] = "every device keeps its IPv4 address",
        ["OneCGNATRoute"] = "agents route only their peers' addresses",
        ["derpMap"] = "the relays are Weft's configuration (Weft:Relay:Regions), not the policy's",
    };

    private readonly List<PolicyIssue> _warnings = [];
    private bool _readPastIgnored;

    private static readonly HashSet<string> NotSupportedAutogroups = new(StringComparer.Ordinal)
    {
        "autogroup:it-admin", "autogroup:network-admin", "autogroup:billing-admin", "autogroup:shared", "autogroup:nonroot", "autogroup:danger-all", "autogroup:owners",
    };

    /// <summary>The autogroups of the tailnet's roles: their members are the users in the role (Tailscale's admin, owner and auditor).</summary>
    public static readonly ImmutableArray<string> RoleAutogroups = ["autogroup:admin", "autogroup:owner", "autogroup:auditor"];

    private const string SupportedAutogroups = "autogroup:member, autogroup:tagged, autogroup:self, autogroup:internet, autogroup:admin, autogroup:owner, autogroup:auditor";

    private IReadOnlyDictionary<string, ImmutableArray<string>>? _providerGroups;
    private IReadOnlyDictionary<string, ImmutableArray<string>>? _roleMembers;
    private readonly List<PolicyIssue> _issues = [];
    private readonly Dictionary<string, ImmutableArray<string>> _groups = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ImmutableArray<string>> _tagOwners = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IPNetwork> _hosts = new(StringComparer.Ordinal);

    [GeneratedRegex("^group:[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$", RegexOptions.CultureInvariant)]
    private static partial Regex GroupName();

    [GeneratedRegex("^[a-z0-9]([a-z0-9.-]{0,62})$", RegexOptions.CultureInvariant)]
    private static partial Regex HostName();

    /// <param name="providerGroups">
    /// The tailnet's identity provider's groups (<c>group:NAME</c> → the emails of its members who signed
    /// in), when it has a provider; null when it has none. They add to the policy's own <c>groups</c>, and
    /// with a provider any <c>group:</c> name is defined (members sign in later).
    /// </param>
    /// <param name="roleMembers">The users in each role's autogroup (<see cref="RoleAutogroups"/> → their names); absent ones have none.</param>
    /// <param name="stored">
    /// The text is a stored policy, read to enforce it: sections that grant nothing here are read past
    /// with a warning (<see cref="IgnoredSections"/>). A policy being set or validated is refused for them.
    /// </param>
    public static PolicyParseResult Parse(string text, IReadOnlyDictionary<string, ImmutableArray<string>>? providerGroups = null,
        IReadOnlyDictionary<string, ImmutableArray<string>>? roleMembers = null, bool stored = false)
    {
        HuValue root;
        try
        {
            root = HuJson.Parse(text);
        }
        catch (HuJsonException e)
        {
            return new PolicyParseResult(null, [new PolicyIssue(e.Line, e.Column, "", e.Reason)]);
        }
        return new PolicyParser { _providerGroups = providerGroups, _roleMembers = roleMembers, _readPastIgnored = stored }.Read(root);
    }

    private void Issue(int line, int column, string path, string message)
    {
        if (_issues.Count < MaxIssues) _issues.Add(new PolicyIssue(line, column, path, message));
    }

    private void Issue(HuValue at, string path, string message) => Issue(at.Line, at.Column, path, message);

    private PolicyParseResult Read(HuValue root)
    {
        if (root.Kind != HuKind.Object)
        {
            Issue(root, "", $"a policy is an object, not {root.Describe()}");
            return new PolicyParseResult(null, [.. _issues]);
        }
        HuValue? acls = null, grants = null, tests = null, autoApprovers = null;
        // Names first (groups, tags, hosts), so that rules may use names defined after them.
        foreach (var member in root.Members)
        {
            switch (member.Name)
            {
                case "groups": ReadGroups(member.Value); break;
                case "tagOwners": ReadTagOwners(member.Value); break;
                case "hosts": ReadHosts(member.Value); break;
                case "acls": acls = member.Value; break;
                case "grants": grants = member.Value; break;
                case "tests": tests = member.Value; break;
                case "autoApprovers": autoApprovers = member.Value; break;
                case var name when IgnoredSections.TryGetValue(name, out var why) && _readPastIgnored:
                    if (_warnings.Count < MaxIssues) _warnings.Add(new PolicyIssue(member.Line, member.Column, name, $"\"{name}\" is ignored: {why}"));
                    break;
                case var name when NotSupportedSections.Contains(name) || IgnoredSections.ContainsKey(name):
                    Issue(member.Line, member.Column, name, $"\"{name}\" is not supported yet by Weft; remove it ({Supported})");
                    break;
                default:
                    Issue(member.Line, member.Column, member.Name, $"unknown field \"{member.Name}\"; {Supported}");
                    break;
            }
        }
        AddProviderGroups();
        // Role autogroups resolve like groups (tagOwners and rules alike); a policy cannot define them itself.
        foreach (var role in RoleAutogroups) _groups[role] = _roleMembers?.GetValueOrDefault(role) ?? [];
        CheckTagOwnerReferences();
        var rules = new List<AccessRule>();
        if (acls is not null) ReadRules(acls, rules);
        if (grants is not null) ReadGrants(grants, rules);
        // As Tailscale: a policy that says nothing about access (no acls, no grants) allows everything,
        // like the default policy; "acls": [] says "nothing", and allows nothing.
        if (acls is null && grants is null)
            rules.Add(new AccessRule(0, [new AnyAlias()], [new Destination(new AnyAlias(), [PortRange.All], "*:*")], [], "the default rule (the policy has no acls or grants)"));
        var entries = rules.Sum(r => (long)r.Sources.Sum(s => s is GroupAlias g ? Math.Max(1, g.Users.Length) : 1) + r.Destinations.Length);
        if (entries > MaxRuleEntries)
            Issue(acls ?? grants ?? root, acls is not null ? "acls" : "grants",
                $"the rules expand to {entries} entries (sources, with groups counted by their members, plus destinations); the limit is {MaxRuleEntries}: use fewer, wider rules");
        var approvers = autoApprovers is null ? AutoApprovers.None : ReadAutoApprovers(autoApprovers);
        var policyTests = tests is null ? [] : ReadTests(tests);
        if (_issues.Count > 0) return new PolicyParseResult(null, [.. _issues]);
        var policy = new TailnetPolicy(
            _groups.ToImmutableSortedDictionary(StringComparer.Ordinal), _tagOwners.ToImmutableSortedDictionary(StringComparer.Ordinal),
            _hosts.ToImmutableSortedDictionary(StringComparer.Ordinal), [.. rules], policyTests) { AutoApprovers = approvers };
        return new PolicyParseResult(policy, []) { Warnings = [.. _warnings] };
    }

    private const string Supported = "a policy has acls, grants, groups, tagOwners, hosts, autoApprovers and tests";

    private IEnumerable<HuMember> MembersOf(HuValue value, string path)
    {
        if (value.Kind == HuKind.Object) return value.Members;
        Issue(value, path, $"expected an object, found {value.Describe()}");
        return [];
    }

    private IEnumerable<(HuValue Item, string Path)> ItemsOf(HuValue value, string path)
    {
        if (value.Kind == HuKind.Array) return value.Items.Select((item, i) => (item, $"{path}[{i}]"));
        Issue(value, path, $"expected an array, found {value.Describe()}");
        return [];
    }

    private string? StringOf(HuValue value, string path)
    {
        if (value.Kind == HuKind.String) return value.Text;
        Issue(value, path, $"expected a string, found {value.Describe()}");
        return null;
    }

    private static bool IsUser(string text) => text.Contains('@') && !text.Contains(':') && !text.Any(char.IsWhiteSpace) && text.Length <= 128;

    // ------------------------------------------------------------------ groups, tagOwners, hosts

    private void ReadGroups(HuValue value)
    {
        foreach (var member in MembersOf(value, "groups"))
        {
            var path = $"groups[\"{member.Name}\"]";
            if (!GroupName().IsMatch(member.Name))
            {
                Issue(member.Line, member.Column, path, $"\"{member.Name}\" is not a group name: groups are written group:<name>");
                continue;
            }
            var users = new List<string>();
            foreach (var (item, itemPath) in ItemsOf(member.Value, path))
            {
                if (StringOf(item, itemPath) is not { } entry) continue;
                if (entry.StartsWith("group:", StringComparison.Ordinal))
                    Issue(item, itemPath, $"{member.Name} contains {entry}: groups cannot contain other groups; list the users");
                else if (entry.StartsWith("tag:", StringComparison.Ordinal) || entry.StartsWith("autogroup:", StringComparison.Ordinal))
                    Issue(item, itemPath, $"{member.Name} contains {entry}: groups hold users only");
                else if (!IsUser(entry))
                    Issue(item, itemPath, $"\"{entry}\" is not a user: users are written like alice@example.com");
                else users.Add(entry);
            }
            _groups[member.Name] = [.. users.Distinct(StringComparer.OrdinalIgnoreCase)];
        }
    }

    private readonly List<(HuValue At, string Path, string Owner)> _ownerReferences = [];

    private void ReadTagOwners(HuValue value)
    {
        foreach (var member in MembersOf(value, "tagOwners"))
        {
            var path = $"tagOwners[\"{member.Name}\"]";
            if (!PolicyNames.IsTag(member.Name))
            {
                Issue(member.Line, member.Column, path, $"\"{member.Name}\" is not a tag: {PolicyNames.TagRule}");
                continue;
            }
            var owners = new List<string>();
            foreach (var (item, itemPath) in ItemsOf(member.Value, path))
            {
                if (StringOf(item, itemPath) is not { } owner) continue;
                owners.Add(owner);
                _ownerReferences.Add((item, itemPath, owner));
            }
            _tagOwners[member.Name] = [.. owners];
        }
    }

    /// <summary>The provider's groups join the policy's own (a group both name has the members of both).</summary>
    private void AddProviderGroups()
    {
        if (_providerGroups is null) return;
        foreach (var (group, members) in _providerGroups)
        {
            if (!GroupName().IsMatch(group)) continue; // a provider group whose name a policy cannot write
            _groups[group] = _groups.TryGetValue(group, out var own) ? [.. own.Union(members, StringComparer.OrdinalIgnoreCase)] : members;
        }
    }

    /// <summary>A group the policy uses: its own or the provider's; with a provider, any group (its members may not have signed in yet).</summary>
    private bool TryGroup(string group, out ImmutableArray<string> members)
    {
        if (_groups.TryGetValue(group, out members)) return true;
        if (_providerGroups is null || !GroupName().IsMatch(group)) return false;
        members = [];
        return true;
    }

    private void CheckTagOwnerReferences()
    {
        foreach (var (at, path, owner) in _ownerReferences)
        {
            if (owner.StartsWith("group:", StringComparison.Ordinal) && !TryGroup(owner, out _))
                Issue(at, path, $"{owner} is not defined in groups");
            else if (owner.StartsWith("tag:", StringComparison.Ordinal) && !_tagOwners.ContainsKey(owner))
                Issue(at, path, $"{owner} is not defined in tagOwners");
            else if (owner.StartsWith("autogroup:", StringComparison.Ordinal) && owner is not ("autogroup:admin" or "autogroup:member" or "autogroup:owner"))
                Issue(at, path, $"{owner} cannot own tags");
            else if (!owner.Contains(':') && !IsUser(owner))
                Issue(at, path, $"\"{owner}\" is not a user, group or tag");
        }
    }

    private void ReadHosts(HuValue value)
    {
        foreach (var member in MembersOf(value, "hosts"))
        {
            var path = $"hosts[\"{member.Name}\"]";
            if (!HostName().IsMatch(member.Name) || member.Name.All(c => char.IsAsciiDigit(c) || c == '.'))
            {
                Issue(member.Line, member.Column, path, $"\"{member.Name}\" is not a host name: use lowercase letters, digits, '-' and '.'");
                continue;
            }
            if (StringOf(member.Value, path) is not { } text) continue;
            if (TryPrefix(text) is { } prefix) _hosts[member.Name] = prefix;
            else Issue(member.Value, path, $"\"{text}\" is not an IP address or CIDR prefix");
        }
    }

    /// <summary>An IP (as a /32 or /128) or a CIDR that names its network (100.64.0.0/10, not 100.64.1.2/10), strictly as Go's netip reads them.</summary>
    private static IPNetwork? TryPrefix(string text) => IpLiteral.TryParsePrefix(text, out var prefix, allowBareAddress: true) ? prefix : null;

    // ------------------------------------------------------------------ aliases

    /// <summary>Resolves one src or dst target; reports and returns null when it names nothing.</summary>
    private Alias? ReadAlias(string text, HuValue at, string path, bool destination)
    {
        if (text == "*") return new AnyAlias();
        if (text.StartsWith("autogroup:", StringComparison.Ordinal))
        {
            switch (text)
            {
                case "autogroup:member" or "autogroup:members": return new MemberAlias(); // "members": Tailscale's legacy spelling, still accepted there
                case "autogroup:tagged": return new TaggedAlias();
                case "autogroup:self" when destination: return new SelfAlias();
                case "autogroup:internet" when destination: return new InternetAlias();
                case "autogroup:internet":
                    Issue(at, path, "autogroup:internet can only be a destination");
                    return null;
                case "autogroup:self":
                    Issue(at, path, "autogroup:self can only be a destination");
                    return null;
                case var role when RoleAutogroups.Contains(role): return new GroupAlias(role, _groups[role]);
                case var known when NotSupportedAutogroups.Contains(known):
                    Issue(at, path, $"{known} is not supported yet by Weft (supported: {SupportedAutogroups})");
                    return null;
                default:
                    Issue(at, path, $"unknown autogroup \"{text}\" (supported: {SupportedAutogroups})");
                    return null;
            }
        }
        if (text.StartsWith("group:", StringComparison.Ordinal))
        {
            if (TryGroup(text, out var users)) return new GroupAlias(text, users);
            Issue(at, path, $"{text} is not defined in groups");
            return null;
        }
        if (text.StartsWith("tag:", StringComparison.Ordinal))
        {
            if (_tagOwners.ContainsKey(text)) return new TagAlias(text);
            Issue(at, path, PolicyNames.IsTag(text) ? $"{text} is not defined in tagOwners" : $"\"{text}\" is not a valid tag");
            return null;
        }
        if (text.StartsWith("ipset:", StringComparison.Ordinal) || text.StartsWith("svc:", StringComparison.Ordinal) || text.StartsWith("user:", StringComparison.Ordinal))
        {
            Issue(at, path, $"\"{text}\": {text[..(text.IndexOf(':') + 1)]} selectors are not supported yet by Weft (write users as alice@example.com)");
            return null;
        }
        if (IsUser(text)) return new UserAlias(text);
        if (_hosts.TryGetValue(text, out var host)) return new PrefixAlias(text, host);
        if (TryPrefix(text) is { } prefix) return new PrefixAlias(text, prefix);
        Issue(at, path, text.Contains('/') || text.Contains('.') && text.All(c => char.IsAsciiDigit(c) || c is '.' or '/')
            ? $"\"{text}\" is not a valid IP address or CIDR prefix"
            : $"\"{text}\" is not a user, group:, tag:, autogroup:, IP, CIDR or a host defined in hosts");
        return null;
    }

    private ImmutableArray<PortRange>? ReadPorts(string text, HuValue at, string path, bool allowPortZero = false)
    {
        if (text == "*") return [PortRange.All];
        var ranges = new List<PortRange>();
        foreach (var part in text.Split(','))
        {
            var dash = part.IndexOf('-');
            var (firstText, lastText) = dash < 0 ? (part, part) : (part[..dash], part[(dash + 1)..]);
            if (!int.TryParse(firstText, NumberStyles.None, CultureInfo.InvariantCulture, out var first) ||
                !int.TryParse(lastText, NumberStyles.None, CultureInfo.InvariantCulture, out var last))
            {
                Issue(at, path, $"\"{part}\" is not a port: use a number, a range like 8000-8099, a comma-separated list, or *");
                return null;
            }
            if (first == 0 && !allowPortZero)
            {
                // As Tailscale: "*" is every port; a range that names port 0 is a mistake.
                Issue(at, path, $"port 0 is not a port: the first port must be above 0 (write * for every port)");
                return null;
            }
            if (first is < 0 or > 65535 || last is < 0 or > 65535)
            {
                Issue(at, path, $"port {(first is < 0 or > 65535 ? first : last)} is out of range (0-65535)");
                return null;
            }
            if (first > last)
            {
                Issue(at, path, $"port range {part} runs backwards");
                return null;
            }
            ranges.Add(new PortRange(first, last));
        }
        return [.. ranges];
    }

    /// <summary>Splits "target:ports" at the last colon ("[v6]:ports" for IPv6 addresses).</summary>
    private Destination? ReadDestination(string text, HuValue at, string path, bool test = false)
    {
        string target, ports;
        if (text.StartsWith('['))
        {
            var close = text.IndexOf("]:", StringComparison.Ordinal);
            if (close < 0)
            {
                Issue(at, path, $"\"{text}\" needs ports: write [address]:ports");
                return null;
            }
            (target, ports) = (text[1..close], text[(close + 2)..]);
        }
        else
        {
            var colon = text.LastIndexOf(':');
            if (colon <= 0 || colon == text.Length - 1 || text is "tag:" or "group:" || text.StartsWith("tag:", StringComparison.Ordinal) && text.IndexOf(':') == colon
                || text.StartsWith("group:", StringComparison.Ordinal) && text.IndexOf(':') == colon || text.StartsWith("autogroup:", StringComparison.Ordinal) && text.IndexOf(':') == colon)
            {
                Issue(at, path, $"\"{text}\" needs ports: destinations are written target:ports, for example tag:web:443 or *:*");
                return null;
            }
            (target, ports) = (text[..colon], text[(colon + 1)..]);
        }
        var alias = ReadAlias(target, at, path, destination: true);
        // A test names port 0 for protocols without ports (Tailscale's way to test ICMP).
        var ranges = ReadPorts(ports, at, path, allowPortZero: test);
        return alias is null || ranges is null ? null : new Destination(alias, ranges.Value, text);
    }

    private ImmutableArray<int>? ReadProtocol(HuValue value, string path) =>
        StringOf(value, path) is { } text ? ReadProtocolName(text, value, path) : null;

    private ImmutableArray<int>? ReadProtocolName(string text, HuValue value, string path)
    {
        if (IpProtocols.ByName.TryGetValue(text, out var known)) return [.. known];
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number is >= 1 and <= 255) return [number];
        Issue(value, path, $"unknown proto \"{text}\": use tcp, udp, icmp, sctp, gre, esp, ah, igmp, ipv4, egp, igp, ipv6-icmp, or an IANA number 1-255");
        return null;
    }

    // ------------------------------------------------------------------ acls

    private void ReadRules(HuValue acls, List<AccessRule> rules)
    {
        foreach (var (item, path) in ItemsOf(acls, "acls"))
        {
            if (item.Kind != HuKind.Object)
            {
                Issue(item, path, $"an access rule is an object, found {item.Describe()}");
                continue;
            }
            HuValue? src = null, dst = null, proto = null;
            var hasAction = false;
            foreach (var member in item.Members)
            {
                var memberPath = $"{path}.{member.Name}";
                switch (member.Name)
                {
                    case "action":
                        hasAction = true;
                        // "allow" is Tailscale's legacy spelling of "accept", still accepted there.
                        if (StringOf(member.Value, memberPath) is { } action && action is not ("accept" or "allow"))
                            Issue(member.Value, memberPath, $"action \"{action}\" is not allowed: the only action is \"accept\" (everything else is denied)");
                        break;
                    case "src" or "users":
                        if (src is not null) Issue(member.Line, member.Column, memberPath, "give src or its legacy name users, not both");
                        src = member.Value;
                        break;
                    case "dst" or "ports":
                        if (dst is not null) Issue(member.Line, member.Column, memberPath, "give dst or its legacy name ports, not both");
                        dst = member.Value;
                        break;
                    case "proto":
                        proto = member.Value;
                        break;
                    case "srcPosture" or "via":
                        Issue(member.Line, member.Column, memberPath, $"\"{member.Name}\" is not supported yet by Weft");
                        break;
                    default:
                        Issue(member.Line, member.Column, memberPath, $"unknown field \"{member.Name}\"; an access rule has action, src, dst and proto");
                        break;
                }
            }
            if (!hasAction) Issue(item, path, "missing \"action\": \"accept\"");
            if (src is null) Issue(item, path, "missing \"src\"");
            if (dst is null) Issue(item, path, "missing \"dst\"");
            if (src is null || dst is null) continue;

            var sources = ReadSources(src, path);
            var destinations = new List<Destination>();
            foreach (var (entry, entryPath) in ItemsOf(dst, $"{path}.dst"))
                if (StringOf(entry, entryPath) is { } text && ReadDestination(text, entry, entryPath) is { } destination) destinations.Add(destination);
            ImmutableArray<int> protocols = [];
            if (proto is not null && ReadProtocol(proto, $"{path}.proto") is { } read)
            {
                protocols = read;
                if (!protocols.Any(IpProtocols.HasPorts))
                {
                    foreach (var (entry, entryPath) in ItemsOf(dst, $"{path}.dst"))
                        if (entry.Text is { } text && !text.EndsWith(":*", StringComparison.Ordinal))
                            Issue(entry, entryPath, $"proto {proto.Text} has no ports: write the destination with :*");
                }
            }
            CheckSourcesFit(src, dst, path, "rule", sources, destinations.Any(d => d.Target is SelfAlias));
            rules.Add(new AccessRule(rules.Count, [.. sources], [.. destinations], protocols, path));
        }
    }

    private List<Alias> ReadSources(HuValue src, string path)
    {
        var sources = new List<Alias>();
        foreach (var (entry, entryPath) in ItemsOf(src, $"{path}.src"))
            if (StringOf(entry, entryPath) is { } text && ReadAlias(text, entry, entryPath, destination: false) is { } alias) sources.Add(alias);
        return sources;
    }

    /// <summary>What a rule and a grant both check: neither side empty, and autogroup:self only for user sources.</summary>
    private void CheckSourcesFit(HuValue src, HuValue dst, string path, string what, List<Alias> sources, bool toSelf)
    {
        if (src.Kind == HuKind.Array && src.Items.Count == 0) Issue(src, $"{path}.src", $"src is empty: the {what} would allow nothing");
        if (dst.Kind == HuKind.Array && dst.Items.Count == 0) Issue(dst, $"{path}.dst", $"dst is empty: the {what} would allow nothing");
        if (toSelf && sources.Any(s => s is TagAlias or TaggedAlias or PrefixAlias))
            Issue(src, $"{path}.src", "with autogroup:self in dst, src may only hold users, groups, autogroup:member or *");
    }

    // ------------------------------------------------------------------ grants

    /// <summary>
    /// Reads <c>grants</c>: each becomes one access rule per protocol set in its <c>ip</c> list, so a
    /// grant and the equivalent <c>acls</c> entries compile to the same filters.
    /// </summary>
    private void ReadGrants(HuValue grants, List<AccessRule> rules)
    {
        foreach (var (item, path) in ItemsOf(grants, "grants"))
        {
            if (item.Kind != HuKind.Object)
            {
                Issue(item, path, $"a grant is an object, found {item.Describe()}");
                continue;
            }
            HuValue? src = null, dst = null, ip = null;
            ImmutableArray<string> via = [];
            foreach (var member in item.Members)
            {
                var memberPath = $"{path}.{member.Name}";
                switch (member.Name)
                {
                    case "src": src = member.Value; break;
                    case "dst": dst = member.Value; break;
                    case "ip": ip = member.Value; break;
                    case "via": via = ReadVia(member.Value, memberPath); break;
                    case "app":
                        Issue(member.Line, member.Column, memberPath, "application capabilities (\"app\") are not supported by Weft; grant network access with \"ip\"");
                        break;
                    case "srcPosture":
                        Issue(member.Line, member.Column, memberPath, "\"srcPosture\" is not supported yet by Weft");
                        break;
                    default:
                        Issue(member.Line, member.Column, memberPath, $"unknown field \"{member.Name}\"; a grant has src, dst and ip");
                        break;
                }
            }
            if (src is null) Issue(item, path, "missing \"src\"");
            if (dst is null) Issue(item, path, "missing \"dst\"");
            if (ip is null && !item.Members.Any(m => m.Name == "app")) Issue(item, path, "missing \"ip\": a grant gives network access with ip, for example [\"*\"] or [\"tcp:443\"]");
            if (src is null || dst is null || ip is null) continue;

            var sources = ReadSources(src, path);
            var targets = new List<(Alias Alias, string Text)>();
            foreach (var (entry, entryPath) in ItemsOf(dst, $"{path}.dst"))
            {
                if (StringOf(entry, entryPath) is not { } text) continue;
                if (ReadAlias(text.StartsWith('[') && text.EndsWith(']') ? text[1..^1] : text, entry, entryPath, destination: true) is { } alias) targets.Add((alias, text));
            }
            // One rule per protocol set, with a destination per target and ip entry: ["tcp:443", "tcp:80", "udp:53"] on
            // tag:web is the rule tcp to tag:web:443 and tag:web:80, and the rule udp to tag:web:53, as the acls would say it.
            var byProtocols = new List<(ImmutableArray<int> Protocols, string Name, List<ImmutableArray<PortRange>> Ports)>();
            foreach (var (entry, entryPath) in ItemsOf(ip, $"{path}.ip"))
            {
                if (StringOf(entry, entryPath) is not { } text || ReadIpCapability(text, entry, entryPath) is not { } capability) continue;
                var group = byProtocols.FirstOrDefault(g => g.Name == capability.Name);
                if (group.Ports is null) byProtocols.Add(group = (capability.Protocols, capability.Name, []));
                group.Ports.Add(capability.Ports);
            }
            CheckSourcesFit(src, dst, path, "grant", sources, targets.Any(t => t.Alias is SelfAlias));
            if (ip.Kind == HuKind.Array && ip.Items.Count == 0) Issue(ip, $"{path}.ip", "ip is empty: the grant would allow nothing");
            var viaText = via.IsEmpty ? "" : " via " + string.Join(",", via);
            foreach (var (protocols, name, portLists) in byProtocols)
            {
                var destinations = targets.SelectMany(t => portLists.Select(ports => new Destination(t.Alias, ports, $"{t.Text}:{string.Join(",", ports)}{viaText}") { Via = via }))
                    .ToImmutableArray();
                rules.Add(new AccessRule(rules.Count, [.. sources], destinations, protocols, name.Length == 0 ? path : $"{path} ({name})"));
            }
        }
    }

    /// <summary>A grant's <c>via</c>: tags (defined in tagOwners) of the routers that carry its routed traffic.</summary>
    private ImmutableArray<string> ReadVia(HuValue value, string path)
    {
        var tags = new List<string>();
        foreach (var (item, itemPath) in ItemsOf(value, path))
        {
            if (StringOf(item, itemPath) is not { } text) continue;
            if (!text.StartsWith("tag:", StringComparison.Ordinal)) Issue(item, itemPath, $"via takes tags only (the routers' tags), not \"{text}\"");
            else if (ReadAlias(text, item, itemPath, destination: false) is not null) tags.Add(text);
        }
        return [.. tags.Distinct().Order(StringComparer.Ordinal)];
    }

    /// <summary>One <c>ip</c> entry of a grant: <c>*</c>, <c>443</c>, <c>80-443</c>, <c>tcp:443</c> or <c>icmp:*</c>.</summary>
    private (ImmutableArray<int> Protocols, string Name, ImmutableArray<PortRange> Ports)? ReadIpCapability(string text, HuValue at, string path)
    {
        var colon = text.IndexOf(':');
        if (colon < 0)
        {
            // No protocol: TCP, UDP and ICMP, as an acls entry without proto.
            return ReadPorts(text, at, path) is { } ports ? ([], "", ports) : null;
        }
        var protocolText = text[..colon];
        if (ReadProtocolName(protocolText, at, path) is not { } protocols) return null;
        if (ReadPorts(text[(colon + 1)..], at, path) is not { } ranges) return null;
        if (!protocols.Any(IpProtocols.HasPorts) && !(ranges.Length == 1 && ranges[0] == PortRange.All))
        {
            Issue(at, path, $"{protocolText} has no ports: write {protocolText}:*");
            return null;
        }
        return (protocols, protocolText.ToLowerInvariant(), ranges);
    }

    // ------------------------------------------------------------------ autoApprovers

    private AutoApprovers ReadAutoApprovers(HuValue value)
    {
        var routes = new List<(IPNetwork, ImmutableArray<Alias>)>();
        ImmutableArray<Alias> exitNode = [];
        foreach (var member in MembersOf(value, "autoApprovers"))
        {
            var path = $"autoApprovers.{member.Name}";
            switch (member.Name)
            {
                case "routes":
                    foreach (var route in MembersOf(member.Value, path))
                    {
                        var routePath = $"{path}[\"{route.Name}\"]";
                        if (!IpLiteral.TryParsePrefix(route.Name, out var prefix))
                        {
                            Issue(route.Line, route.Column, routePath, $"\"{route.Name}\" is not a CIDR prefix (for example 198.51.100.0/24)");
                            continue;
                        }
                        if (Routing.IsExitRoute(prefix))
                        {
                            Issue(route.Line, route.Column, routePath, $"{route.Name} is an exit route: approve exit nodes with autoApprovers.exitNode");
                            continue;
                        }
                        routes.Add((prefix, ReadApprovers(route.Value, routePath)));
                    }
                    break;
                case "exitNode":
                    exitNode = ReadApprovers(member.Value, path);
                    break;
                default:
                    Issue(member.Line, member.Column, path, $"unknown field \"{member.Name}\"; autoApprovers has routes and exitNode");
                    break;
            }
        }
        return new AutoApprovers([.. routes], exitNode);
    }

    /// <summary>Who may approve: users, groups, tags, autogroup:member or autogroup:tagged.</summary>
    private ImmutableArray<Alias> ReadApprovers(HuValue value, string path)
    {
        var approvers = new List<Alias>();
        foreach (var (item, itemPath) in ItemsOf(value, path))
        {
            if (StringOf(item, itemPath) is not { } text) continue;
            if (text is "autogroup:member" or "autogroup:tagged" || text.StartsWith("group:", StringComparison.Ordinal) || text.StartsWith("tag:", StringComparison.Ordinal) || IsUser(text))
            {
                if (ReadAlias(text, item, itemPath, destination: false) is { } alias) approvers.Add(alias);
            }
            else Issue(item, itemPath, $"\"{text}\" cannot approve routes: use users, group:, tag:, autogroup:member or autogroup:tagged");
        }
        return [.. approvers];
    }

    // ------------------------------------------------------------------ tests

    /// <summary>A test names one address: an IP written alone, or a host that names one (never a CIDR, not even a /32).</summary>
    private static bool NamesOneAddress(PrefixAlias prefix) =>
        !prefix.Text.Contains('/') && prefix.Prefix.PrefixLength == IpLiteral.MaxLength(prefix.Prefix.BaseAddress);

    private ImmutableArray<PolicyTest> ReadTests(HuValue tests)
    {
        var result = new List<PolicyTest>();
        foreach (var (item, path) in ItemsOf(tests, "tests"))
        {
            if (item.Kind != HuKind.Object)
            {
                Issue(item, path, $"a test is an object, found {item.Describe()}");
                continue;
            }
            string? source = null, protocol = null;
            var accept = new List<string>();
            var deny = new List<string>();
            foreach (var member in item.Members)
            {
                var memberPath = $"{path}.{member.Name}";
                switch (member.Name)
                {
                    case "src":
                        source = StringOf(member.Value, memberPath);
                        if (source is "*" or "autogroup:member" or "autogroup:tagged")
                        {
                            Issue(member.Value, memberPath, $"a test's src is one user, group, tag, host or IP, not {source}");
                            source = null;
                        }
                        else if (source is not null)
                        {
                            var alias = ReadAlias(source, member.Value, memberPath, destination: false);
                            if (alias is PrefixAlias prefix && !NamesOneAddress(prefix))
                            {
                                Issue(member.Value, memberPath, $"a test's src is one address, not the prefix \"{source}\"");
                                source = null;
                            }
                            else if (alias is null) source = null;
                        }
                        break;
                    case "proto":
                        protocol = ReadProtocol(member.Value, memberPath) is not null ? member.Value.Text : null;
                        break;
                    case "accept" or "deny":
                        var into = member.Name == "accept" ? accept : deny;
                        foreach (var (entry, entryPath) in ItemsOf(member.Value, memberPath))
                        {
                            if (StringOf(entry, entryPath) is not { } text || ReadDestination(text, entry, entryPath, test: true) is not { } destination) continue;
                            if (destination.Ports.Length != 1 || destination.Ports[0].First != destination.Ports[0].Last)
                                Issue(entry, entryPath, $"a test checks one port: write \"{destination.Target.Text}:22\", not \"{text}\"");
                            else if (destination.Target is AnyAlias or SelfAlias or MemberAlias or TaggedAlias or InternetAlias)
                                Issue(entry, entryPath, $"a test checks a concrete destination (user, tag, host or IP), not {destination.Target.Text}");
                            else if (destination.Target is PrefixAlias prefix && !NamesOneAddress(prefix))
                                // Tailscale: tests take single IPs or hosts, never CIDRs (not even a /32).
                                Issue(entry, entryPath, $"a test checks one address, not a prefix: \"{text}\" (write the address alone, or a host that names one address)");
                            else into.Add(text);
                        }
                        break;
                    default:
                        Issue(member.Line, member.Column, memberPath, $"unknown field \"{member.Name}\"; a test has src, proto, accept and deny");
                        break;
                }
            }
            if (!item.Members.Any(m => m.Name == "src")) Issue(item, path, "missing \"src\"");
            if (!item.Members.Any(m => m.Name is "accept" or "deny" && m.Value.Kind == HuKind.Array && m.Value.Items.Count > 0))
                Issue(item, path, "a test needs \"accept\" or \"deny\" (or both), each with at least one destination");
            if (source is not null) result.Add(new PolicyTest(result.Count, source, protocol, [.. accept], [.. deny], item.Line, item.Column));
        }
        return [.. result];
    }
}
