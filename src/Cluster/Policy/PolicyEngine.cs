using System.Collections.Immutable;
using System.Net;

namespace Weft.Cluster.Policy;

/// <summary>
/// An active device as the policy sees it: who it belongs to, its addresses, and what it routes
/// (its approved subnet routes, and whether it is an approved exit node).
/// </summary>
public sealed record PolicyDevice(string DeviceId, string? User, ImmutableArray<string> Tags, string Ipv4, string Ipv6,
    ImmutableArray<IPNetwork> Routes = default, bool ExitNode = false)
{
    // Built once per instance. A copy made with `with` carries the cache of the original, which names
    // its owner: the copy sees that it is not the owner and builds its own from its own values.
    private (PolicyDevice Owner, Principal Value) _principal;

    public Principal Principal
    {
        get
        {
            if (!ReferenceEquals(_principal.Owner, this))
                _principal = (this, Principal.OfDevice(User, Tags, Ipv4, Ipv6) with { Routes = Routes.IsDefault ? [] : Routes, ExitNode = ExitNode });
            return _principal.Value;
        }
    }

    public ImmutableArray<IPNetwork> SubnetRoutes => Principal.SubnetRoutes;

    public bool Equals(PolicyDevice? other) =>
        other is not null && DeviceId == other.DeviceId && User == other.User && Tags.SequenceEqual(other.Tags) && Ipv4 == other.Ipv4 && Ipv6 == other.Ipv6
        && SubnetRoutes.SequenceEqual(other.SubnetRoutes) && ExitNode == other.ExitNode;

    public override int GetHashCode() => DeviceId.GetHashCode();
}

/// <summary>
/// One rule of a device's inbound packet filter. Sources stay symbolic wherever the policy was
/// (<c>tag:web</c>, <c>user:alice@example.com</c>, <c>autogroup:member</c>): the agent resolves them
/// against its peers, so a device that gains a tag does not change anyone else's filter. What it
/// opens: the device's own IPv4 and/or IPv6 address, and on a router the parts of its routes (or of
/// the internet, on an exit node) that the rule's destination covers (<see cref="Routed"/>).
/// </summary>
public sealed record FilterGrant(string Key, ImmutableArray<string> Sources, bool CoversIpv4, bool CoversIpv6, ImmutableArray<PortRange> Ports, ImmutableArray<int> Protocols,
    ImmutableArray<string> Routed = default);

/// <summary>What one change did: who now sees whom (both directions listed), and whose filter changed.</summary>
public sealed record PolicyChange(IReadOnlyList<(string Viewer, string Peer)> Added, IReadOnlyList<(string Viewer, string Peer)> Removed, IReadOnlyCollection<string> FiltersChanged)
{
    public static readonly PolicyChange None = new([], [], []);

    /// <summary>Every device that must hear about this change.</summary>
    public IReadOnlySet<string> Touched => Added.Concat(Removed).Select(p => p.Viewer).Concat(FiltersChanged).ToHashSet();

    /// <summary>This change and then <paramref name="next"/>, as one: a pair added by one and removed by the other is neither.</summary>
    public PolicyChange Then(PolicyChange next)
    {
        if (ReferenceEquals(next, None) || next.Added.Count == 0 && next.Removed.Count == 0 && next.FiltersChanged.Count == 0) return this;
        var added = Added.ToHashSet();
        var removed = Removed.ToHashSet();
        foreach (var pair in next.Removed)
            if (!added.Remove(pair)) removed.Add(pair);
        foreach (var pair in next.Added)
            if (!removed.Remove(pair)) added.Add(pair);
        return new PolicyChange([.. added], [.. removed], FiltersChanged.Concat(next.FiltersChanged).ToHashSet());
    }
}

/// <summary>
/// The compiled policy of one tailnet: for each rule the set of source and destination devices (one
/// bit per device), and for each device the rules it is in. Who may see a device and what its filter
/// holds are computed from those in time proportional to its rules, so a change — a policy edit, a
/// device that joins, leaves or is re-tagged — is worked out for the devices it touches only, and
/// reported as the visibility pairs and filters that changed.
/// </summary>
public sealed class PolicyEngine
{
    private sealed class CompiledEntry(Destination destination, int index)
    {
        public Destination Destination { get; } = destination;
        public int Index { get; } = index;
        public DeviceBits Devices { get; } = new();
    }

    private sealed class CompiledRule
    {
        public CompiledRule(AccessRule rule)
        {
            Rule = rule;
            Key = rule.Key;
            Entries = [.. rule.Destinations.Select((d, i) => new CompiledEntry(d, i)).Where(e => e.Destination.Target is not SelfAlias)];
            SelfEntries = [.. rule.Destinations.Where(d => d.Target is SelfAlias)];
            Sources = [.. rule.Sources.SelectMany(AgentSelectors).Distinct()];
        }

        public AccessRule Rule { get; set; }
        public string Key { get; }
        public CompiledEntry[] Entries { get; }
        public Destination[] SelfEntries { get; }
        public ImmutableArray<string> Sources { get; }
        public DeviceBits Src { get; } = new();
        public DeviceBits DstAll { get; } = new();
        public bool HasSelf => SelfEntries.Length > 0;
    }

    private sealed class Slot(PolicyDevice device)
    {
        public PolicyDevice Device { get; set; } = device;
        public List<CompiledRule> SourceOf { get; } = [];
        public List<CompiledRule> DestinationOf { get; } = [];
        public ImmutableArray<FilterGrant> Filter { get; set; } = [];
    }

    private readonly Dictionary<string, int> _slotOf = new(StringComparer.Ordinal);
    private readonly List<Slot?> _slots = [];
    private readonly Stack<int> _free = new();
    private readonly Dictionary<string, DeviceBits> _userDevices = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, FilterGrant> _grants = new(StringComparer.Ordinal);
    /// <summary>The size of <see cref="_grants"/> after its last pruning (<see cref="PruneGrants"/>).</summary>
    private int _grantsAfterPrune;
    private List<CompiledRule> _rules = [];

    private PolicyEngine(TailnetPolicy policy) => Policy = policy;

    public TailnetPolicy Policy { get; private set; }

    public int DeviceCount => _slotOf.Count;

    /// <summary>How many users own a device here (each has a set of its devices, for autogroup:self).</summary>
    public int UsersWithDevices => _userDevices.Count;

    /// <summary>How many grants the engine keeps to share between devices' filters (those filters hold, and some no longer held).</summary>
    public int CachedGrantCount => _grants.Count;

    public static PolicyEngine Compile(TailnetPolicy policy, IEnumerable<PolicyDevice> devices)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var engine = new PolicyEngine(policy) { _rules = [.. policy.Rules.Select(r => new CompiledRule(r))] };
        foreach (var device in devices)
        {
            var slot = engine.Allocate(device);
            engine.Place(slot);
        }
        foreach (var slot in engine.Occupied()) engine._slots[slot]!.Filter = engine.ComputeFilter(slot);
        Telemetry.CoordinatorMetrics.PolicyCompileDuration.Record(Telemetry.CoordinatorMetrics.SecondsSince(started));
        return engine;
    }

    // ------------------------------------------------------------------ queries

    public bool Contains(string deviceId) => _slotOf.ContainsKey(deviceId);

    /// <summary>Every device <paramref name="deviceId"/> may reach or be reached by, itself excluded.</summary>
    public IEnumerable<string> VisiblePeers(string deviceId) =>
        _slotOf.TryGetValue(deviceId, out var slot) ? Visible(slot).Slots().Select(s => _slots[s]!.Device.DeviceId) : [];

    public int VisibleCount(string deviceId) => _slotOf.TryGetValue(deviceId, out var slot) ? Visible(slot).Count : 0;

    public bool CanSee(string viewer, string peer) =>
        _slotOf.TryGetValue(viewer, out var a) && _slotOf.TryGetValue(peer, out var b) && a != b && Visible(a)[b];

    public ImmutableArray<FilterGrant> FilterOf(string deviceId) => _slotOf.TryGetValue(deviceId, out var slot) ? _slots[slot]!.Filter : [];

    /// <summary>Does the policy restrict routed traffic to some routers (a grant's <c>via</c>)? Only then do routers look different to different viewers.</summary>
    public bool HasVia => Policy.HasVia;

    /// <summary>
    /// The routes of <paramref name="routerId"/> that <paramref name="viewerId"/> may send through it:
    /// all of them, except those that a grant with <c>via</c> sends (for this viewer) through routers
    /// with other tags. The exit routes count as one: whether it may use the router as its exit node.
    /// </summary>
    public (ImmutableArray<string> Routes, bool ExitNode) UsableRoutes(string viewerId, string routerId)
    {
        if (!_slotOf.TryGetValue(routerId, out var routerSlot)) return ([], false);
        var router = _slots[routerSlot]!.Device.Principal;
        var routes = router.SubnetRoutes.Select(Routing.Text).ToImmutableArray();
        if (!_slotOf.TryGetValue(viewerId, out var viewerSlot) || !HasVia) return (routes, router.ExitNode);
        var restricting = _slots[viewerSlot]!.SourceOf.SelectMany(r => r.Rule.Destinations).Where(d => !d.Via.IsEmpty).ToList();
        bool Usable(IPNetwork route)
        {
            var covering = restricting.Where(d => d.Target.Covers(route)).ToList();
            return covering.Count == 0 || covering.Any(d => d.CarriedBy(router));
        }
        return ([.. router.SubnetRoutes.Where(Usable).Select(Routing.Text)], router.ExitNode && Usable(Routing.AllIpv4));
    }

    // ------------------------------------------------------------------ changes

    /// <summary>A device joined, became active again, or changed tags or owner.</summary>
    public PolicyChange Upsert(PolicyDevice device)
    {
        if (_slotOf.TryGetValue(device.DeviceId, out var existing) && _slots[existing]!.Device.Equals(device)) return PolicyChange.None;
        var isNew = !_slotOf.ContainsKey(device.DeviceId);
        var slot = isNew ? Allocate(device) : existing;
        var before = isNew ? new DeviceBits() : Visible(slot);
        if (!isNew)
        {
            Unplace(slot);
            _slots[slot]!.Device = device;
        }
        Place(slot);
        var after = Visible(slot);
        var (added, removed) = Diff(slot, before, after);
        var filters = RefreshFilters([slot]);
        return new PolicyChange(added, removed, filters);
    }

    /// <summary>A device left (deleted, expired, or no longer active).</summary>
    public PolicyChange Remove(string deviceId)
    {
        if (!_slotOf.TryGetValue(deviceId, out var slot)) return PolicyChange.None;
        var before = Visible(slot);
        var (_, removed) = Diff(slot, before, new DeviceBits());
        Unplace(slot);
        _slotOf.Remove(deviceId);
        _slots[slot] = null;
        _free.Push(slot);
        return new PolicyChange([], removed, []);
    }

    /// <summary>A new policy: rules that did not change keep their compiled sets; only devices in changed rules are recomputed.</summary>
    public PolicyChange ChangePolicy(TailnetPolicy policy)
    {
        var unused = _rules.GroupBy(r => r.Key).ToDictionary(g => g.Key, g => new Queue<CompiledRule>(g));
        var next = new List<CompiledRule>();
        var added = new List<CompiledRule>();
        foreach (var rule in policy.Rules)
        {
            if (unused.TryGetValue(rule.Key, out var same) && same.Count > 0)
            {
                var kept = same.Dequeue();
                kept.Rule = rule;
                next.Add(kept);
            }
            else
            {
                var compiled = new CompiledRule(rule);
                next.Add(compiled);
                added.Add(compiled);
            }
        }
        var removed = unused.Values.SelectMany(q => q).ToList();
        Policy = policy;
        if (added.Count == 0 && removed.Count == 0)
        {
            _rules = next;
            return PolicyChange.None;
        }

        // Who can be affected: the devices of every removed rule now, and of every added rule once compiled.
        var affected = new DeviceBits();
        var filtersAffected = new DeviceBits();
        foreach (var rule in removed) Touch(rule, affected, filtersAffected);
        var slots = Occupied().ToList();
        foreach (var rule in added)
        {
            foreach (var slot in slots) MatchInto(rule, slot);
            Touch(rule, affected, filtersAffected);
        }
        var affectedSlots = affected.Slots().ToList();
        var before = affectedSlots.ToDictionary(s => s, Visible);

        foreach (var rule in removed)
        {
            foreach (var slot in rule.Src.Slots()) _slots[slot]!.SourceOf.Remove(rule);
            foreach (var slot in rule.DstAll.Slots()) _slots[slot]!.DestinationOf.Remove(rule);
        }
        foreach (var rule in added)
        {
            foreach (var slot in rule.Src.Slots()) _slots[slot]!.SourceOf.Add(rule);
            foreach (var slot in rule.DstAll.Slots()) _slots[slot]!.DestinationOf.Add(rule);
        }
        _rules = next;

        var addedPairs = new List<(string, string)>();
        var removedPairs = new List<(string, string)>();
        foreach (var slot in affectedSlots)
        {
            var (plus, minus) = Diff(slot, before[slot], Visible(slot), bothDirections: false);
            addedPairs.AddRange(plus);
            removedPairs.AddRange(minus);
        }
        return new PolicyChange(addedPairs, removedPairs, RefreshFilters(filtersAffected.Slots()));
    }

    private void Touch(CompiledRule rule, DeviceBits affected, DeviceBits filtersAffected)
    {
        affected.Or(rule.Src);
        affected.Or(rule.DstAll);
        filtersAffected.Or(rule.DstAll);
        if (!rule.HasSelf) return;
        // autogroup:self reaches the untagged devices of every user among the sources.
        foreach (var slot in rule.Src.Slots())
        {
            if (_slots[slot]!.Device.Principal.User is { } user && _userDevices.TryGetValue(user, out var own))
            {
                affected.Or(own);
                filtersAffected.Or(own);
            }
        }
    }

    // ------------------------------------------------------------------ internals

    private IEnumerable<int> Occupied() => _slotOf.Values;

    private int Allocate(PolicyDevice device)
    {
        var slot = _free.Count > 0 ? _free.Pop() : _slots.Count;
        if (slot == _slots.Count) _slots.Add(null);
        _slots[slot] = new Slot(device);
        _slotOf[device.DeviceId] = slot;
        return slot;
    }

    /// <summary>Puts a device into every rule set it matches, and its user's set.</summary>
    private void Place(int slot)
    {
        var entry = _slots[slot]!;
        if (entry.Device.Principal.User is { } user)
        {
            if (!_userDevices.TryGetValue(user, out var own)) _userDevices[user] = own = new DeviceBits();
            own.Set(slot, true);
        }
        foreach (var rule in _rules)
        {
            MatchInto(rule, slot);
            if (rule.Src[slot]) entry.SourceOf.Add(rule);
            if (rule.DstAll[slot]) entry.DestinationOf.Add(rule);
        }
    }

    private void MatchInto(CompiledRule rule, int slot)
    {
        var principal = _slots[slot]!.Device.Principal;
        rule.Src.Set(slot, rule.Rule.Sources.Any(a => a.Matches(principal)));
        var any = false;
        foreach (var entry in rule.Entries)
        {
            var match = entry.Destination.Matches(principal);
            entry.Devices.Set(slot, match);
            any |= match;
        }
        rule.DstAll.Set(slot, any);
    }

    private void Unplace(int slot)
    {
        var entry = _slots[slot]!;
        if (entry.Device.Principal.User is { } user && _userDevices.TryGetValue(user, out var own))
        {
            own.Set(slot, false);
            if (own.Count == 0) _userDevices.Remove(user); // a tailnet entity lives for the node's uptime: users come and go
        }
        foreach (var rule in entry.SourceOf) rule.Src.Set(slot, false);
        foreach (var rule in entry.DestinationOf)
        {
            rule.DstAll.Set(slot, false);
            foreach (var e in rule.Entries) e.Devices.Set(slot, false);
        }
        entry.SourceOf.Clear();
        entry.DestinationOf.Clear();
    }

    private DeviceBits Visible(int slot)
    {
        var entry = _slots[slot]!;
        var user = entry.Device.Principal.User;
        var own = user is not null && _userDevices.TryGetValue(user, out var bits) ? bits : null;
        var visible = new DeviceBits(_slots.Count);
        foreach (var rule in entry.SourceOf)
        {
            visible.Or(rule.DstAll);
            if (rule.HasSelf && own is not null) visible.Or(own);
        }
        foreach (var rule in entry.DestinationOf) visible.Or(rule.Src);
        if (own is not null)
        {
            foreach (var rule in _rules)
                if (rule.HasSelf) visible.OrAnd(rule.Src, own);
        }
        visible.Set(slot, false);
        return visible;
    }

    private (List<(string, string)> Added, List<(string, string)> Removed) Diff(int slot, DeviceBits before, DeviceBits after, bool bothDirections = true)
    {
        var id = _slots[slot]!.Device.DeviceId;
        var added = new List<(string, string)>();
        var removed = new List<(string, string)>();
        var gained = after.Clone();
        gained.AndNot(before);
        var lost = before.Clone();
        lost.AndNot(after);
        foreach (var other in gained.Slots())
        {
            var peer = _slots[other]!.Device.DeviceId;
            added.Add((id, peer));
            if (bothDirections) added.Add((peer, id));
        }
        foreach (var other in lost.Slots())
        {
            var peer = _slots[other]?.Device.DeviceId;
            if (peer is null) continue;
            removed.Add((id, peer));
            if (bothDirections) removed.Add((peer, id));
        }
        return (added, removed);
    }

    private List<string> RefreshFilters(IEnumerable<int> slots)
    {
        var changed = new List<string>();
        foreach (var slot in slots)
        {
            var entry = _slots[slot];
            if (entry is null) continue;
            var filter = ComputeFilter(slot);
            if (filter.Select(g => g.Key).SequenceEqual(entry.Filter.Select(g => g.Key))) continue;
            entry.Filter = filter;
            changed.Add(entry.Device.DeviceId);
        }
        PruneGrants();
        return changed;
    }

    /// <summary>
    /// Forgets the shared grants that no device's filter holds any more. A grant's key names its rule's
    /// sources, so every change to them (a group's members, a role, a policy edit) makes new keys, and a
    /// tailnet entity lives as long as its node: without this the cache only grows. It runs once the cache
    /// has doubled since it last ran, so its cost is spread over the grants made in between.
    /// </summary>
    private void PruneGrants()
    {
        if (_grants.Count < 2 * _grantsAfterPrune + 256) return;
        var held = new HashSet<string>(StringComparer.Ordinal);
        foreach (var slot in _slots)
            if (slot is not null) foreach (var grant in slot.Filter) held.Add(grant.Key);
        foreach (var key in _grants.Keys.Where(k => !held.Contains(k)).ToList()) _grants.Remove(key);
        _grantsAfterPrune = _grants.Count;
    }

    private ImmutableArray<FilterGrant> ComputeFilter(int slot)
    {
        var entry = _slots[slot]!;
        var device = entry.Device;
        var grants = new List<FilterGrant>();
        foreach (var rule in entry.DestinationOf)
        {
            foreach (var destination in rule.Entries)
            {
                if (!destination.Devices[slot]) continue;
                var (v4, v6, routed) = destination.Destination.CarriedBy(device.Principal)
                    ? Coverage(destination.Destination.Target, device)
                    : Coverage(destination.Destination.Target, device with { Routes = [], ExitNode = false }); // via names other routers: itself only
                var key = $"{rule.Key}#{destination.Index}#{(v4 ? 4 : 0) + (v6 ? 6 : 0)}{(routed.IsEmpty ? "" : "#" + string.Join(",", routed))}";
                grants.Add(Grant(key, rule.Sources, v4, v6, destination.Destination.Ports, rule.Rule.EffectiveProtocols, routed));
            }
        }
        if (device.Principal.User is { } user)
        {
            var owner = new Principal(user, [], []);
            foreach (var rule in _rules)
            {
                if (!rule.HasSelf || !rule.Rule.Sources.Any(a => a.Matches(owner))) continue;
                foreach (var self in rule.SelfEntries)
                    grants.Add(Grant($"{rule.Key}#self:{user}#{self.Text}", [$"user:{user}"], true, true, self.Ports, rule.Rule.EffectiveProtocols, []));
            }
        }
        return [.. grants.DistinctBy(g => g.Key).OrderBy(g => g.Key, StringComparer.Ordinal)];
    }

    private FilterGrant Grant(string key, ImmutableArray<string> sources, bool v4, bool v6, ImmutableArray<PortRange> ports, ImmutableArray<int> protocols,
        ImmutableArray<string> routed)
    {
        if (_grants.TryGetValue(key, out var shared)) return shared;
        return _grants[key] = new FilterGrant(key, sources, v4, v6, ports, protocols, routed);
    }

    /// <summary>
    /// What a destination opens on one device: its own addresses that the target covers, and on a
    /// router the routed prefixes. An identity (user, tag, group) opens the device's own addresses
    /// only, as in Tailscale: reaching a router's subnets takes a rule on the subnet's addresses.
    /// </summary>
    private static (bool V4, bool V6, ImmutableArray<string> Routed) Coverage(Alias target, PolicyDevice device)
    {
        var principal = device.Principal;
        switch (target)
        {
            case PrefixAlias prefix:
                var routed = principal.SubnetRoutes.Select(r => Routing.Overlap(r, prefix.Prefix)).OfType<IPNetwork>();
                if (principal.ExitNode) routed = routed.Concat(Routing.InternetPart(prefix.Prefix));
                return (prefix.Prefix.Contains(IPAddress.Parse(device.Ipv4)), prefix.Prefix.Contains(IPAddress.Parse(device.Ipv6)), Texts(routed));
            case AnyAlias:
                // "*" is every address: on an exit node, all of them (as Tailscale's 0.0.0.0/0 and ::/0).
                return (true, true, principal.ExitNode ? [Routing.Text(Routing.AllIpv4), Routing.Text(Routing.AllIpv6)] : Texts(principal.SubnetRoutes));
            case InternetAlias:
                return (false, false, principal.ExitNode ? Texts(Routing.Internet) : []);
            default:
                return (true, true, []);
        }
    }

    private static ImmutableArray<string> Texts(IEnumerable<IPNetwork> prefixes) => [.. prefixes.Select(Routing.Text).Distinct()];

    /// <summary>How the agent names a source: identities stay identities, addresses become prefixes.</summary>
    public static IEnumerable<string> AgentSelectors(Alias alias) => alias switch
    {
        AnyAlias => ["*"],
        UserAlias user => [$"user:{user.User}"],
        GroupAlias group => group.Users.Select(u => $"user:{u}"),
        TagAlias tag => [tag.Tag],
        PrefixAlias prefix => [prefix.Prefix.ToString()],
        MemberAlias => ["autogroup:member"],
        TaggedAlias => ["autogroup:tagged"],
        _ => [],
    };
}
