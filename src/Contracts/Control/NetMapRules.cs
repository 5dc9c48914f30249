namespace Weft.Contracts.Control;

/// <summary>How a netmap changes under a delta: the one rule the coordinator and the agents share.</summary>
public static class NetMapRules
{
    /// <summary>A copy of <paramref name="node"/> with every field the patch sets replaced; absent fields stay.</summary>
    public static Node Patched(Node node, PeerPatch patch)
    {
        var copy = node.Clone();
        if (patch.Endpoints is not null)
        {
            copy.Endpoints.Clear();
            copy.Endpoints.AddRange(patch.Endpoints.Endpoints);
        }
        if (patch.HasHomeRelay) copy.HomeRelay = patch.HomeRelay;
        if (patch.HasOnline) copy.Online = patch.Online;
        if (patch.LastSeen is not null) copy.LastSeen = patch.LastSeen;
        if (patch.HasNodeKey) copy.NodeKey = patch.NodeKey;
        if (patch.HasDiscoKey) copy.DiscoKey = patch.DiscoKey;
        if (patch.KeyExpiry is not null) copy.KeyExpiry = patch.KeyExpiry;
        return copy;
    }
}
