using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Weft.Cluster.Policy;
using Weft.Contracts.Control;

namespace Weft.Cluster.Tailnets;

/// <summary>Turns the tailnet's device index into the control protocol's nodes and netmaps.</summary>
public static class NetMapBuilder
{
    /// <summary>The device's disco key as it goes on the wire: empty until the agent has reported one.</summary>
    public static ByteString DiscoKeyOf(DeviceEntry device) =>
        device.DiscoKey.Length == 64 ? ByteString.CopyFrom(Convert.FromHexString(device.DiscoKey)) : ByteString.Empty;

    /// <summary>Whether viewers see <paramref name="device"/> differently: a router under a policy with <c>via</c> (each its usable routes).</summary>
    public static bool DiffersPerViewer(DeviceEntry device, PolicyEngine engine) => engine.HasVia && (!device.SubnetRoutes.IsEmpty || device.IsExitNode);

    /// <summary>
    /// The node of <paramref name="device"/>; for a router seen by <paramref name="viewer"/> under a
    /// policy with <c>via</c>, with only the routes that viewer may send through it.
    /// </summary>
    public static Node NodeFor(TailnetState tailnet, DeviceEntry device, bool online, PolicyEngine? engine = null, string? viewer = null)
    {
        var (routes, exitNode) = (device.SubnetRoutes, device.IsExitNode);
        if (engine is not null && viewer is not null && DiffersPerViewer(device, engine))
            (routes, exitNode) = engine.UsableRoutes(viewer, device.DeviceId);
        var node = new Node
        {
            Id = device.DeviceId,
            Name = device.Name,
            Fqdn = $"{device.Name}.{tailnet.Settings.DnsSuffix}",
            NodeKey = ByteString.CopyFrom(Convert.FromHexString(device.NodeKey)),
            DiscoKey = DiscoKeyOf(device),
            Addresses = { device.Ipv4, device.Ipv6 },
            AllowedIps = { device.Ipv4 + "/32", device.Ipv6 + "/128", routes },
            Routes = { routes },
            ExitNode = exitNode,
            Endpoints = { device.Endpoints },
            HomeRelay = device.HomeRelay,
            Online = online,
            Tags = { device.Tags },
            User = UserNameOf(tailnet, device),
            Expired = device.Status == DeviceStatus.Expired,
            Os = device.Os,
        };
        if (device.LastSeen is { } seen) node.LastSeen = Timestamp.FromDateTimeOffset(seen);
        if (device.KeyExpiry is { } expiry) node.KeyExpiry = Timestamp.FromDateTimeOffset(expiry);
        node.EndpointsVersion = device.EndpointsVersion;
        if (device.EndpointsUnknown)
        {
            node.EndpointsVersion = 0;
            // Older than what a viewer may hold: the viewer keeps its own until the device reports again.
            node.EndpointsUnknown = true;
            node.Endpoints.Clear();
            node.HomeRelay = 0;
            node.DiscoKey = ByteString.Empty;
        }
        return node;
    }

    /// <summary>The name of the user who owns <paramref name="device"/>; empty for a tagged device.</summary>
    public static string UserNameOf(TailnetState tailnet, DeviceEntry device) =>
        device.UserId is { } userId && tailnet.Users.TryGetValue(userId, out var user) ? user.Name : "";

    public static Node SelfFor(TailnetState tailnet, DeviceEntry device, bool online)
    {
        var self = NodeFor(tailnet, device, online);
        self.AdvertisedRoutes.AddRange(device.AdvertisedRoutes);
        self.Status = device.Status switch
        {
            DeviceStatus.Active => "active",
            DeviceStatus.Pending => "pending",
            _ => "expired",
        };
        return self;
    }

    public static DnsConfig DnsFor(TailnetState tailnet) => new() { Suffix = tailnet.Settings.DnsSuffix };

    /// <summary>The whole netmap of one device (version left at 0: the device's entity stamps it).</summary>
    public static NetMap Build(TailnetState tailnet, string deviceId, PolicyEngine engine, Func<string, bool> isOnline)
    {
        var netmap = OwnParts(tailnet, deviceId, engine, isOnline);
        foreach (var peer in engine.VisiblePeers(deviceId).Order(StringComparer.Ordinal))
            netmap.Peers.Add(NodeFor(tailnet, tailnet.Devices[peer], isOnline(peer), engine, deviceId));
        return netmap;
    }

    /// <summary>
    /// <see cref="Build"/> serialised, with each peer taken from <paramref name="peers"/> as it was
    /// encoded for earlier maps when it has not changed since: the map's own parts are serialised and
    /// the peers appended as they are (a parser reads the same map either way).
    /// </summary>
    public static byte[] BuildEncoded(TailnetState tailnet, string deviceId, PolicyEngine engine, Func<string, bool> isOnline, EncodedPeerNodes peers)
    {
        var own = OwnParts(tailnet, deviceId, engine, isOnline);
        var encoded = new List<ByteString>();
        foreach (var peer in engine.VisiblePeers(deviceId).Order(StringComparer.Ordinal))
        {
            var device = tailnet.Devices[peer];
            encoded.Add(DiffersPerViewer(device, engine)
                ? NodeFor(tailnet, device, isOnline(peer), engine, deviceId).ToByteString()
                : peers.Of(tailnet, device, isOnline(peer)));
        }
        var bytes = new byte[own.CalculateSize() + EncodedFields.Size(NetMap.PeersFieldNumber, encoded)];
        var output = new CodedOutputStream(bytes);
        own.WriteTo(output);
        EncodedFields.Write(output, NetMap.PeersFieldNumber, encoded);
        output.CheckNoSpaceLeft();
        return bytes;
    }

    /// <summary>What a device's netmap holds besides its peers: itself, DNS and its filter.</summary>
    private static NetMap OwnParts(TailnetState tailnet, string deviceId, PolicyEngine engine, Func<string, bool> isOnline) => new()
    {
        TailnetId = tailnet.TailnetId,
        Self = SelfFor(tailnet, tailnet.Devices[deviceId], isOnline(deviceId)),
        Dns = DnsFor(tailnet),
        Filter = FilterFor(tailnet, deviceId, engine),
    };

    /// <summary>The device's inbound filter as the agent receives it (empty for a device the policy does not place).</summary>
    public static PacketFilter FilterFor(TailnetState tailnet, string deviceId, PolicyEngine engine)
    {
        var filter = new PacketFilter();
        if (!tailnet.Devices.TryGetValue(deviceId, out var device)) return filter;
        foreach (var grant in engine.FilterOf(deviceId))
        {
            var rule = new FilterRule { Sources = { grant.Sources }, Protocols = { grant.Protocols } };
            if (grant.CoversIpv4) rule.Destinations.Add(device.Ipv4 + "/32");
            if (grant.CoversIpv6) rule.Destinations.Add(device.Ipv6 + "/128");
            if (!grant.Routed.IsDefault) rule.Destinations.Add(grant.Routed);
            if (rule.Destinations.Count == 0) continue;
            foreach (var range in grant.Ports) rule.Ports.Add(new Contracts.Control.PortRange { First = (uint)range.First, Last = (uint)range.Last });
            filter.Rules.Add(rule);
        }
        return filter;
    }
}
