using System.Collections.Immutable;
using Google.Protobuf;
using Weft.Cluster.Policy;
using Weft.Contracts.Control;

namespace Weft.Cluster.Tailnets;

/// <summary>
/// Works out, for one change of the tailnet, which devices must hear about it and what: the
/// visibility pairs and filters the <see cref="PolicyEngine"/> reports changed, and patches to the
/// devices that can see the changed one. The cost is the number of devices touched — never a rebuild
/// of everyone's netmap.
/// </summary>
public static class PeerFanOut
{
    /// <summary>
    /// Who gets what because of one persisted event, after the engine has taken it in. A device that
    /// leaves the tailnet is not told here: the tailnet tells its entity once, in one message
    /// (<see cref="Devices.MarkDeviceRemoved"/>).
    /// </summary>
    public static void Collect(ITailnetEvent @event, TailnetState before, TailnetState after, PolicyChange change, PolicyEngine engine,
        Func<string, bool> isOnline, DeltaAccumulator into)
    {
        foreach (var (viewer, peer) in change.Removed) into.Remove(viewer, peer);
        // A device that has just registered hears nothing from its join. Its entity is new and takes no
        // delta before its session's first attach, and that attach asks for a full map, which drops
        // whatever is pending for it (DeltaAccumulator.Delivered): its view of every peer, its own record
        // and its filter would be built only to be thrown away. In a tailnet of N that is N nodes per join.
        var joined = @event is DeviceRegistered registered ? registered.Device.DeviceId : null;
        if (change.Added.Count > 0)
        {
            // One node per peer for all its new viewers (a join reaches every peer of the device), so
            // that their deltas share one encoding, and the peer looked up once, not once per viewer (in a
            // tailnet of thousands that lookup in the sorted map was the dearest step); a router under via
            // differs per viewer.
            var nodes = new Dictionary<string, Node>();
            foreach (var (viewer, peer) in change.Added)
            {
                if (viewer == joined) continue;
                if (nodes.TryGetValue(peer, out var shared))
                {
                    into.Add(viewer, shared);
                    continue;
                }
                var device = after.Devices[peer];
                if (NetMapBuilder.DiffersPerViewer(device, engine))
                    into.Add(viewer, NetMapBuilder.NodeFor(after, device, isOnline(peer), engine, viewer));
                else
                {
                    var node = nodes[peer] = NetMapBuilder.NodeFor(after, device, isOnline(peer));
                    into.Add(viewer, node);
                }
            }
        }
        foreach (var device in change.FiltersChanged.Where(d => d != joined)) into.Filter(device, NetMapBuilder.FilterFor(after, device, engine));
        if (TailnetPolicyFollowing.RecompilesPolicy(@event) && (before.Policy.HasVia || after.Policy.HasVia))
        {
            // Who is a source of which via rule may have changed (the policy, or the members of a role or a provider's
            // group it names): which router may carry what for whom too. Every router again, to each viewer.
            foreach (var router in after.Devices.Values.Where(d => d.IsActive && (!d.SubnetRoutes.IsEmpty || d.IsExitNode)))
                Changed(after, router.DeviceId, engine, isOnline, into);
        }

        switch (@event)
        {
            case DeviceReauthorized e:
                Changed(after, e.DeviceId, engine, isOnline, into);
                into.Resync(e.DeviceId);
                break;
            case DeviceApproved e:
                into.Resync(e.DeviceId); // a pending device gets its first real netmap
                break;
            case DeviceRenamed e:
                Changed(after, e.DeviceId, engine, isOnline, into);
                break;
            case DeviceTagsChanged e:
                // Viewers re-resolve tag: sources in their filters from the peer's new tags.
                Changed(after, e.DeviceId, engine, isOnline, into);
                // Under via, its tags decide which routers' routes it may use.
                if (engine.HasVia) RoutersFor(after, e.DeviceId, engine, isOnline, into);
                break;
            case UserSignedIn e when before.Users.TryGetValue(e.User.UserId, out var was) && was.Name != e.User.Name:
                // The provider gave the user a new email: every node of theirs names them by it (peers' filters match users by name).
                foreach (var device in after.Devices.Values.Where(d => d.IsActive && d.UserId == e.User.UserId))
                    Changed(after, device.DeviceId, engine, isOnline, into);
                break;
            case DeviceRoutesAdvertised e:
                RoutesChanged(before, after, e.DeviceId, engine, isOnline, into);
                break;
            case DeviceRoutesApproved e:
                RoutesChanged(before, after, e.DeviceId, engine, isOnline, into);
                break;
            case DeviceExpired e:
                into.End(e.DeviceId, ControlErrorCodes.DeviceExpired, TailnetRules.ExpiredDeviceMessage);
                break;
            case DeviceHostinfoChanged e when before.Devices[e.DeviceId].Os != e.Os:
                // Of what an agent reports, peers see only the OS.
                Changed(after, e.DeviceId, engine, isOnline, into);
                break;
            case DeviceEndpointsChanged e:
                // Stored only for a registration that brings a new disco key (reports are soft: see
                // EndpointsReported): the key alone, since the endpoints are not news.
                Patch(e.DeviceId, engine, new PeerPatch { Id = e.DeviceId, DiscoKey = ByteString.CopyFrom(Convert.FromHexString(e.DiscoKey)) }, into);
                break;
            case DeviceNodeKeyRotated e:
                var patch = new PeerPatch { Id = e.DeviceId, NodeKey = ByteString.CopyFrom(Convert.FromHexString(e.NodeKey)) };
                if (e.KeyExpiry is { } expiry) patch.KeyExpiry = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(expiry);
                Patch(e.DeviceId, engine, patch, into);
                Self(after, e.DeviceId, isOnline, into);
                break;
            case DnsSuffixChanged:
                // Every name changes with it (each node's FQDN, the device's own and its peers'), not only the
                // DNS settings: an agent given the new suffix with the old names could build no name table, and
                // kept its old one. A rare admin act: every device gets a full map.
                foreach (var device in after.Devices.Values.Where(d => d.IsActive)) into.Resync(device.DeviceId);
                break;
        }
    }

    /// <summary>
    /// A device reported new endpoints (soft state, not an event): a versioned patch to its viewers.
    /// A device whose endpoints this tailnet incarnation did not know yet (viewers got it marked
    /// unknown and kept what they held) is restated whole to each viewer instead: a viewer holding the
    /// same report keeps it, by its version.
    /// </summary>
    public static void EndpointsReported(TailnetState before, TailnetState after, string deviceId, PolicyEngine engine, Func<string, bool> isOnline, DeltaAccumulator into)
    {
        if (before.Devices[deviceId].EndpointsUnknown)
        {
            Changed(after, deviceId, engine, isOnline, into);
            return;
        }
        var device = after.Devices[deviceId];
        Patch(deviceId, engine, new PeerPatch
        {
            Id = deviceId,
            Endpoints = new EndpointList { Endpoints = { device.Endpoints } },
            HomeRelay = device.HomeRelay,
            DiscoKey = NetMapBuilder.DiscoKeyOf(device),
            EndpointsVersion = device.EndpointsVersion,
        }, into);
    }

    /// <summary>A device came online or went offline (sessions are not events: this is not persisted).</summary>
    public static void Presence(string deviceId, bool online, DateTimeOffset at, PolicyEngine engine, DeltaAccumulator into)
    {
        var patch = new PeerPatch { Id = deviceId, Online = online };
        if (!online) patch.LastSeen = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(at);
        Patch(deviceId, engine, patch, into);
    }

    private static void Changed(TailnetState after, string deviceId, PolicyEngine engine, Func<string, bool> isOnline, DeltaAccumulator into)
    {
        var device = after.Devices[deviceId];
        if (NetMapBuilder.DiffersPerViewer(device, engine))
        {
            // A router under via: each viewer gets the routes it may send through it.
            foreach (var viewer in engine.VisiblePeers(deviceId)) into.Change(viewer, NetMapBuilder.NodeFor(after, device, isOnline(deviceId), engine, viewer));
        }
        else
        {
            var node = NetMapBuilder.NodeFor(after, device, isOnline(deviceId));
            foreach (var viewer in engine.VisiblePeers(deviceId)) into.Change(viewer, node);
        }
        Self(after, deviceId, isOnline, into);
    }

    private static void RoutesChanged(TailnetState before, TailnetState after, string deviceId, PolicyEngine engine, Func<string, bool> isOnline, DeltaAccumulator into)
    {
        if (before.Devices[deviceId].EnabledRoutes.SequenceEqual(after.Devices[deviceId].EnabledRoutes))
            Self(after, deviceId, isOnline, into); // only what it advertises or has approved changed: the device itself shows it
        else
            Changed(after, deviceId, engine, isOnline, into); // its peers' AllowedIPs and route tables follow
    }

    /// <summary>The routers <paramref name="viewerId"/> sees, again, with the routes it may now use through each.</summary>
    private static void RoutersFor(TailnetState after, string viewerId, PolicyEngine engine, Func<string, bool> isOnline, DeltaAccumulator into)
    {
        foreach (var peer in engine.VisiblePeers(viewerId))
        {
            var router = after.Devices[peer];
            if (!router.SubnetRoutes.IsEmpty || router.IsExitNode) into.Change(viewerId, NetMapBuilder.NodeFor(after, router, isOnline(peer), engine, viewerId));
        }
    }

    private static void Patch(string deviceId, PolicyEngine engine, PeerPatch patch, DeltaAccumulator into)
    {
        foreach (var viewer in engine.VisiblePeers(deviceId)) into.Patch(viewer, patch);
    }

    private static void Self(TailnetState after, string deviceId, Func<string, bool> isOnline, DeltaAccumulator into) =>
        into.Self(deviceId, NetMapBuilder.SelfFor(after, after.Devices[deviceId], isOnline(deviceId)));
}

/// <summary>
/// Changes waiting to go to each recipient, merged so that a recipient gets one message per flush
/// however many changes happened: a later patch overwrites an earlier one field by field, a removal
/// cancels an earlier add, and so on.
/// </summary>
public sealed class DeltaAccumulator
{
    private readonly Dictionary<string, Pending> _byRecipient = new();

    // A patch folded into the same pending node or patch gives the same instance for every recipient
    // (one device's presence and then endpoints reach all its peers in one window), so that their
    // deltas still share one encoding. Forgotten at each drain, with the flush it served.
    private readonly Dictionary<(Node, PeerPatch), Node> _patchedNodes = new(ReferencePairComparer<Node, PeerPatch>.Instance);
    private readonly Dictionary<(PeerPatch, PeerPatch), PeerPatch> _mergedPatches = new(ReferencePairComparer<PeerPatch, PeerPatch>.Instance);

    /// <summary>
    /// What one recipient has pending. A flush drains every recipient, and a join in a tailnet of N makes
    /// N of these, most of which only ever get one added peer: each collection is made when first written.
    /// </summary>
    public sealed class Pending
    {
        // Shared by every pending delta that has none: immutable, so that no reader can write into another's.
        private static readonly IReadOnlyDictionary<string, Node> NoNodes = ImmutableDictionary<string, Node>.Empty;
        private static readonly IReadOnlySet<string> NoIds = ImmutableHashSet<string>.Empty;
        private static readonly IReadOnlyDictionary<string, PeerPatch> NoPatches = ImmutableDictionary<string, PeerPatch>.Empty;

        private Dictionary<string, Node>? _added;
        private Dictionary<string, Node>? _changed;
        private HashSet<string>? _removed;
        private Dictionary<string, PeerPatch>? _patches;

        /// <summary>Read only: writes go through <see cref="DeltaAccumulator"/>.</summary>
        public IReadOnlyDictionary<string, Node> Added => _added ?? NoNodes;
        public IReadOnlyDictionary<string, Node> Changed => _changed ?? NoNodes;
        public IReadOnlySet<string> Removed => _removed ?? NoIds;
        public IReadOnlyDictionary<string, PeerPatch> Patches => _patches ?? NoPatches;

        internal Dictionary<string, Node> AddedToWrite => _added ??= new();
        internal Dictionary<string, Node> ChangedToWrite => _changed ??= new();
        internal HashSet<string> RemovedToWrite => _removed ??= new();
        internal Dictionary<string, PeerPatch> PatchesToWrite => _patches ??= new();

        internal bool ForgetAdd(string peerId) => _added?.Remove(peerId) ?? false;
        internal void ForgetChange(string peerId) => _changed?.Remove(peerId);
        internal bool ForgetRemoval(string peerId) => _removed?.Remove(peerId) ?? false;
        internal void ForgetPatch(string peerId) => _patches?.Remove(peerId);

        public DnsConfig? Dns;
        public Node? Self;
        public PacketFilter? Filter;
        public bool Resync;
        public (string Code, string Message)? End;

        public bool IsEmpty => Added.Count == 0 && Changed.Count == 0 && Removed.Count == 0 && Patches.Count == 0 && Dns is null && Self is null
            && Filter is null && !Resync && End is null;

        public NetMapDelta ToDelta()
        {
            var delta = OwnParts();
            delta.PeersAdded.AddRange(Added.Values);
            delta.PeersChanged.AddRange(Changed.Values);
            delta.Patches.AddRange(Patches.Values);
            return delta;
        }

        private bool HasOwnParts => Removed.Count > 0 || Dns is not null || Self is not null || Filter is not null;

        /// <summary>What goes to this recipient alone: removals, DNS, its own node and its filter.</summary>
        private NetMapDelta OwnParts()
        {
            var delta = new NetMapDelta();
            delta.PeersRemoved.AddRange(Removed);
            if (Dns is not null) delta.Dns = Dns;
            if (Self is not null) delta.Self = Self;
            if (Filter is not null) delta.Filter = Filter;
            return delta;
        }

        /// <summary>
        /// <see cref="ToDelta"/> serialised, with the peers and patches this recipient shares with others
        /// (one endpoint patch goes to every peer of the device) taken from <paramref name="shared"/>:
        /// serialised once per flush, not once per recipient. The recipient's own parts are serialised
        /// as a delta and the shared ones appended; a parser reads the same delta either way.
        /// </summary>
        public byte[] ToDeltaBytes(SharedEncodings shared)
        {
            if (!HasOwnParts)
            {
                // Nothing of its own: another recipient with the same peers and patches gets the same array.
                var composition = new SharedEncodings.Composition([.. Added.Values, .. Changed.Values, .. Patches.Values], Added.Count, Changed.Count);
                return shared.Whole(composition, () => Encode(shared));
            }
            return Encode(shared);
        }

        private byte[] Encode(SharedEncodings shared)
        {
            var own = OwnParts();
            var size = own.CalculateSize() + shared.FieldsSize(NetMapDelta.PeersAddedFieldNumber, Added.Values)
                + shared.FieldsSize(NetMapDelta.PeersChangedFieldNumber, Changed.Values) + shared.FieldsSize(NetMapDelta.PatchesFieldNumber, Patches.Values);
            var bytes = new byte[size];
            var output = new CodedOutputStream(bytes);
            own.WriteTo(output);
            shared.WriteFields(output, NetMapDelta.PeersAddedFieldNumber, Added.Values);
            shared.WriteFields(output, NetMapDelta.PeersChangedFieldNumber, Changed.Values);
            shared.WriteFields(output, NetMapDelta.PatchesFieldNumber, Patches.Values);
            output.CheckNoSpaceLeft();
            return bytes;
        }
    }

    /// <summary>
    /// Each message serialised once, however many recipients' deltas carry the same instance (one
    /// flush's worth); and each whole delta that is only shared messages built once, so that the
    /// recipients hold one array (the device entities keep deltas for resumption: one endpoint
    /// change would otherwise be kept once per peer of the device).
    /// </summary>
    public sealed class SharedEncodings
    {
        private readonly Dictionary<IMessage, ByteString> _encoded = new(ReferenceEqualityComparer.Instance);
        private readonly Dictionary<Composition, byte[]> _whole = new();

        /// <summary>Which message instances a delta carries, in order, and where its added and changed peers end.</summary>
        public sealed class Composition : IEquatable<Composition>
        {
            private readonly IMessage[] _messages;
            private readonly int _added;
            private readonly int _changed;
            private readonly int _hash;

            public Composition(IMessage[] messages, int added, int changed)
            {
                _messages = messages;
                _added = added;
                _changed = changed;
                var hash = new HashCode();
                hash.Add(added);
                hash.Add(changed);
                foreach (var message in messages) hash.Add(System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(message));
                _hash = hash.ToHashCode();
            }

            public bool Equals(Composition? other)
            {
                if (other is null || other._hash != _hash || other._added != _added || other._changed != _changed || other._messages.Length != _messages.Length) return false;
                for (var i = 0; i < _messages.Length; i++)
                    if (!ReferenceEquals(_messages[i], other._messages[i])) return false;
                return true;
            }

            public override bool Equals(object? obj) => Equals(obj as Composition);

            public override int GetHashCode() => _hash;
        }

        public byte[] Whole(Composition composition, Func<byte[]> encode)
        {
            if (!_whole.TryGetValue(composition, out var bytes)) _whole[composition] = bytes = encode();
            return bytes;
        }

        private ByteString Of(IMessage message)
        {
            if (!_encoded.TryGetValue(message, out var bytes)) _encoded[message] = bytes = message.ToByteString();
            return bytes;
        }

        public int FieldsSize(int field, IEnumerable<IMessage> messages) => EncodedFields.Size(field, messages.Select(Of));

        public void WriteFields(CodedOutputStream output, int field, IEnumerable<IMessage> messages) => EncodedFields.Write(output, field, messages.Select(Of));
    }

    public int RecipientCount => _byRecipient.Count;

    public IEnumerable<KeyValuePair<string, Pending>> Drain()
    {
        var all = _byRecipient.ToList();
        _byRecipient.Clear();
        _patchedNodes.Clear();
        _mergedPatches.Clear();
        return all;
    }

    private Pending For(string recipient) =>
        _byRecipient.TryGetValue(recipient, out var pending) ? pending : _byRecipient[recipient] = new Pending();

    public void Add(string recipient, Node node)
    {
        var pending = For(recipient);
        pending.ForgetPatch(node.Id);
        if (pending.ForgetRemoval(node.Id))
        {
            // Removed, then added again within the window: the recipient still holds it, so it is a change.
            // As an add, a third word (removed again) would cancel it, and the recipient would keep the peer.
            pending.ChangedToWrite[node.Id] = node;
            return;
        }
        pending.ForgetChange(node.Id);
        pending.AddedToWrite[node.Id] = node;
    }

    public void Change(string recipient, Node node)
    {
        var pending = For(recipient);
        pending.ForgetPatch(node.Id);
        if (pending.Added.ContainsKey(node.Id)) pending.AddedToWrite[node.Id] = node;
        else pending.ChangedToWrite[node.Id] = node;
    }

    public void Remove(string recipient, string peerId)
    {
        var pending = For(recipient);
        pending.ForgetPatch(peerId);
        pending.ForgetChange(peerId);
        if (!pending.ForgetAdd(peerId)) pending.RemovedToWrite.Add(peerId);
    }

    public void Patch(string recipient, PeerPatch patch)
    {
        var pending = For(recipient);
        // A patch to a node that goes out whole this time is folded into that node.
        if (pending.Added.TryGetValue(patch.Id, out var added)) pending.AddedToWrite[patch.Id] = Patched(added, patch);
        else if (pending.Changed.TryGetValue(patch.Id, out var changed)) pending.ChangedToWrite[patch.Id] = Patched(changed, patch);
        else if (pending.Patches.TryGetValue(patch.Id, out var earlier)) pending.PatchesToWrite[patch.Id] = Merged(earlier, patch);
        else pending.PatchesToWrite[patch.Id] = patch;
    }

    private Node Patched(Node node, PeerPatch patch)
    {
        if (!_patchedNodes.TryGetValue((node, patch), out var patched)) _patchedNodes[(node, patch)] = patched = NetMapRules.Patched(node, patch);
        return patched;
    }

    private PeerPatch Merged(PeerPatch earlier, PeerPatch later)
    {
        if (!_mergedPatches.TryGetValue((earlier, later), out var merged)) _mergedPatches[(earlier, later)] = merged = MergedCopy(earlier, later);
        return merged;
    }

    public void Self(string recipient, Node self) => For(recipient).Self = self;

    public void Dns(string recipient, DnsConfig dns) => For(recipient).Dns = dns;

    public void Filter(string recipient, PacketFilter filter) => For(recipient).Filter = filter;

    public void Resync(string recipient) => For(recipient).Resync = true;

    /// <summary>
    /// A full map of the recipient was just built from the current state: everything pending for it is
    /// in that map. Dropping it matters: a later removal must not cancel an add the map already delivered.
    /// An end of the session stays.
    /// </summary>
    public void Delivered(string recipient)
    {
        if (!_byRecipient.TryGetValue(recipient, out var pending)) return;
        if (pending.End is { } end)
        {
            _byRecipient[recipient] = new Pending { End = end };
            return;
        }
        _byRecipient.Remove(recipient);
    }

    public void End(string recipient, string code, string message) => For(recipient).End = (code, message);

    private static PeerPatch MergedCopy(PeerPatch earlier, PeerPatch later)
    {
        var merged = earlier.Clone();
        merged.MergeFrom(later); // protobuf merge: set fields of the later patch win, repeated fields append
        if (later.Endpoints is not null) merged.Endpoints = later.Endpoints.Clone();
        return merged;
    }
}

/// <summary>Pairs of instances, equal only when both are the very same objects (messages compare by value otherwise).</summary>
internal sealed class ReferencePairComparer<TFirst, TSecond> : IEqualityComparer<(TFirst, TSecond)> where TFirst : class where TSecond : class
{
    public static readonly ReferencePairComparer<TFirst, TSecond> Instance = new();

    public bool Equals((TFirst, TSecond) x, (TFirst, TSecond) y) => ReferenceEquals(x.Item1, y.Item1) && ReferenceEquals(x.Item2, y.Item2);

    public int GetHashCode((TFirst, TSecond) pair) =>
        HashCode.Combine(System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(pair.Item1), System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(pair.Item2));
}
