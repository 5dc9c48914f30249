using System.Collections.Immutable;
using Weft.Contracts.Control;

namespace Weft.NodeAgent.Control;

/// <summary>What applying one message from the coordinator did to the store.</summary>
public enum NetMapApplied
{
    /// <summary>A full map replaced everything.</summary>
    Replaced,
    /// <summary>A delta continued the stream.</summary>
    Patched,
    /// <summary>A delta whose base is not our version: something was lost, so the agent asks for a full map.</summary>
    Gap,
    /// <summary>A delta or map older than what we hold (a duplicate after a resume); ignored.</summary>
    Stale,
}

/// <summary>
/// What the last applied message changed. A delta of patches alone (endpoints, presence, keys; no
/// peer added, removed or replaced, no new self, filter or DNS, no key expiry) names the peers it
/// patched, so that the data plane and the paths can update those peers alone, as Tailscale's
/// <c>tryHandleIncrementally</c> does. Anything else changed the map as a whole.
/// </summary>
public sealed record NetMapTouch(ImmutableArray<string> PatchedPeers)
{
    /// <summary>A full map, a reset, or a delta that adds, removes or replaces peers or changes what every peer is filtered by.</summary>
    public static readonly NetMapTouch Everything = new(default(ImmutableArray<string>));

    /// <summary>Only these peers' soft fields changed.</summary>
    public bool PeersOnly => !PatchedPeers.IsDefault;

    public static NetMapTouch Of(NetMapDelta delta)
    {
        if (delta.PeersAdded.Count > 0 || delta.PeersChanged.Count > 0 || delta.PeersRemoved.Count > 0
            || delta.Self is not null || delta.Dns is not null || delta.Filter is not null) return Everything;
        var patched = ImmutableArray.CreateBuilder<string>(delta.Patches.Count);
        foreach (var patch in delta.Patches)
        {
            // An expiry can take a peer out of the mesh: that is a change of the whole peer.
            if (patch.KeyExpiry is not null) return Everything;
            patched.Add(patch.Id);
        }
        return new NetMapTouch(patched.ToImmutable());
    }
}

/// <summary>An immutable picture of the netmap at one version, safe to hand to other threads.</summary>
public sealed record NetMapView(
    ulong Version, string TailnetId, Node? Self, ImmutableSortedDictionary<string, Node> Peers, DnsConfig? Dns, ImmutableArray<string> Coordinators,
    PacketFilter Filter)
{
    public static readonly NetMapView Empty = new(0, "", null, ImmutableSortedDictionary<string, Node>.Empty, null, [], new PacketFilter());
}

/// <summary>
/// The agent's copy of its netmap: a full map once, then deltas that must each start where the
/// previous one ended. Single-threaded (the ControlClient actor owns it); <see cref="View"/> is an
/// immutable snapshot, taken when asked for and kept until the next change. The peers live in an
/// immutable tree's builder: a snapshot costs nothing, and a patch rebuilds one path of the tree,
/// so that a delta costs what it touches, not what the map holds.
/// </summary>
public sealed class NetMapStore(Func<Node, Node>? keepPeer = null)
{
    private readonly ImmutableSortedDictionary<string, Node>.Builder _peers = ImmutableSortedDictionary.CreateBuilder<string, Node>(StringComparer.Ordinal);
    private ulong _version;
    private string _tailnetId = "";
    private Node? _self;
    private DnsConfig? _dns;
    private ImmutableArray<string> _coordinators = [];
    private PacketFilter _filter = new();

    public ulong Version => _version;

    /// <summary>True once a full map arrived; deltas before that are gaps.</summary>
    public bool HasMap => _self is not null;

    private NetMapView? _view = NetMapView.Empty;

    public NetMapView View => _view ??=
        new NetMapView(_version, _tailnetId, _self, _peers.ToImmutable(), _dns, _coordinators, _filter);

    /// <summary>What the last change did (<see cref="NetMapTouch.Everything"/> until a delta of patches alone).</summary>
    public NetMapTouch LastTouch { get; private set; } = NetMapTouch.Everything;

    public int PeerCount => _peers.Count;

    /// <summary>This device as the coordinator describes it (cheap, unlike <see cref="View"/>).</summary>
    public Node? Self => _self;

    public bool TryGetPeer(string id, out Node peer) => _peers.TryGetValue(id, out peer!);

    /// <summary>The packet filter as last given (cheap, unlike <see cref="View"/>).</summary>
    public PacketFilter Filter => _filter;

    public NetMapApplied Apply(NetMap map)
    {
        if (HasMap && map.Version != 0 && map.Version < _version) return NetMapApplied.Stale;
        var held = _peers.ToImmutable();
        _peers.Clear();
        foreach (var peer in map.Peers) Put(KeepingHeldEndpoints(peer, held));
        _self = map.Self;
        _dns = map.Dns;
        _tailnetId = map.TailnetId;
        _filter = map.Filter ?? new PacketFilter();
        if (map.Coordinators.Count > 0) _coordinators = [.. map.Coordinators];
        _version = map.Version;
        Publish(NetMapTouch.Everything);
        return NetMapApplied.Replaced;
    }

    public NetMapApplied Apply(NetMapDelta delta)
    {
        if (!HasMap) return NetMapApplied.Gap;
        if (delta.Version <= _version) return NetMapApplied.Stale;
        if (delta.BaseVersion != _version) return NetMapApplied.Gap;
        // A patch for a peer we do not hold cannot be applied: our map has diverged.
        foreach (var patch in delta.Patches)
        {
            var known = (_peers.ContainsKey(patch.Id) || delta.PeersAdded.Any(n => n.Id == patch.Id) || delta.PeersChanged.Any(n => n.Id == patch.Id))
                && !delta.PeersRemoved.Contains(patch.Id);
            if (!known) return NetMapApplied.Gap;
        }

        foreach (var id in delta.PeersRemoved) _peers.Remove(id);
        foreach (var node in delta.PeersAdded) Put(KeepingHeldEndpoints(node, _peers));
        foreach (var node in delta.PeersChanged) Put(KeepingHeldEndpoints(node, _peers));
        foreach (var patch in delta.Patches) _peers[patch.Id] = Keep(NetMapRules.Patched(_peers[patch.Id], patch));
        if (delta.Self is not null) _self = delta.Self;
        if (delta.Dns is not null) _dns = delta.Dns;
        if (delta.Filter is not null) _filter = delta.Filter;
        _version = delta.Version;
        Publish(NetMapTouch.Of(delta));
        return NetMapApplied.Patched;
    }

    /// <summary>What is kept of a peer: all of it, unless the owner asked for less (the load tester's thin agents).</summary>
    private Node Keep(Node peer) => keepPeer is null ? peer : keepPeer(peer);

    /// <summary>Stores a peer under the id of what is kept (a record the owner shares between stores shares its id too).</summary>
    private void Put(Node peer)
    {
        var kept = Keep(peer);
        _peers[kept.Id] = kept;
    }

    /// <summary>
    /// A whole node keeps the endpoints held for it when the coordinator does not know them right now
    /// (it restarted) or sends no newer ones (<see cref="NetMapRules.Merged"/>).
    /// </summary>
    private static Node KeepingHeldEndpoints(Node node, IReadOnlyDictionary<string, Node> held) =>
        NetMapRules.Merged(node, held.GetValueOrDefault(node.Id));

    /// <summary>The whole map as the coordinator would send it (for the on-disk cache).</summary>
    public NetMap ToNetMap()
    {
        var map = new NetMap { Version = _version, TailnetId = _tailnetId, Self = _self, Dns = _dns, Filter = _filter };
        map.Peers.AddRange(_peers.Values);
        map.Coordinators.AddRange(_coordinators);
        return map;
    }

    /// <summary>Forgets everything (the device was deleted, or a resync is due).</summary>
    public void Clear()
    {
        _peers.Clear();
        _self = null;
        _dns = null;
        _filter = new PacketFilter();
        _version = 0;
        Publish(NetMapTouch.Everything);
    }

    private void Publish(NetMapTouch touch)
    {
        _view = null;
        LastTouch = touch;
    }
}
