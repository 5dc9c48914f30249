namespace Weft.Contracts.Control;

/// <summary>How a netmap changes under a delta: the one rule the coordinator and the agents share.</summary>
public static class NetMapRules
{
    /// <summary>
    /// Whether endpoints (and home relay) at <paramref name="incoming"/> may replace those held at
    /// <paramref name="held"/>: a newer report does, an older one (late: resent, or held up across a
    /// failover) never does, and unversioned (0) ones always do. A session stamps a report by its
    /// coordinator's clock, but above the version the device's entity holds, so a clock behind does not
    /// make a new report look old.
    /// </summary>
    public static bool EndpointsNewer(long incoming, long held) => incoming == 0 || held == 0 || incoming > held;

    /// <summary>
    /// A copy of <paramref name="node"/> with every field the patch sets replaced; absent fields stay,
    /// and so do endpoints and home relay the patch does not bring newer (<see cref="EndpointsNewer"/>).
    /// </summary>
    public static Node Patched(Node node, PeerPatch patch)
    {
        var copy = node.Clone();
        var endpointsTaken = !patch.HasEndpointsVersion || EndpointsNewer(patch.EndpointsVersion, node.EndpointsVersion);
        if (patch.Endpoints is not null && endpointsTaken)
        {
            copy.Endpoints.Clear();
            copy.Endpoints.AddRange(patch.Endpoints.Endpoints);
            copy.EndpointsUnknown = false;
        }
        if (patch.HasHomeRelay && endpointsTaken) copy.HomeRelay = patch.HomeRelay;
        if (patch.HasEndpointsVersion && endpointsTaken) copy.EndpointsVersion = patch.EndpointsVersion;
        if (patch.HasOnline) copy.Online = patch.Online;
        if (patch.LastSeen is not null) copy.LastSeen = patch.LastSeen;
        if (patch.HasNodeKey) copy.NodeKey = patch.NodeKey;
        if (patch.HasDiscoKey) copy.DiscoKey = patch.DiscoKey;
        if (patch.KeyExpiry is not null) copy.KeyExpiry = patch.KeyExpiry;
        return copy;
    }

    /// <summary>
    /// A whole node from the coordinator, merged with the one held for the same peer: held endpoints
    /// and home relay stay when the coordinator does not know them (it restarted) or when they are
    /// as new or newer; a disco key stays when the node brings none.
    /// </summary>
    public static Node Merged(Node incoming, Node? held)
    {
        if (held is null) return incoming;
        var keepEndpoints = incoming.EndpointsUnknown || !EndpointsNewer(incoming.EndpointsVersion, held.EndpointsVersion);
        var keepDisco = incoming.DiscoKey.IsEmpty && !held.DiscoKey.IsEmpty;
        if (!keepEndpoints && !keepDisco) return incoming;
        var merged = incoming.Clone();
        if (keepEndpoints)
        {
            merged.Endpoints.Clear();
            merged.Endpoints.AddRange(held.Endpoints);
            merged.HomeRelay = held.HomeRelay;
            merged.EndpointsVersion = held.EndpointsVersion;
            merged.EndpointsUnknown = held.EndpointsUnknown;
        }
        if (keepDisco) merged.DiscoKey = held.DiscoKey;
        return merged;
    }
}
