using System.Collections.Concurrent;
using Weft.Contracts.Control;

namespace Weft.LoadTest.Fleet;

/// <summary>
/// What thin simulated agents keep of each peer: its id, node key and endpoints with their version,
/// which is all the delivery ledger and the end check read. Every agent of a tailnet hears the same
/// peer record, so one instance per peer is shared by every thin store that holds that version of
/// it (stores never change a record they hold: a patch makes a new one). A thin agent then pays for
/// its place in its store's tree, not for a copy of the record: a full record is about 1.5 KB per
/// peer and agent. The agent still runs the real ControlClient and netmap session, so versions,
/// gaps and resyncs are checked as before, and each change it applies is still named by the
/// endpoint it carries.
/// </summary>
public sealed class ThinPeers
{
    // The latest record of each peer: agents that apply the same change share it; one that applies an
    // older or newer one makes its own (and it becomes the latest), so the table holds one per device.
    private readonly ConcurrentDictionary<string, Node> _latest = new(StringComparer.Ordinal);

    public Node Of(Node peer)
    {
        if (_latest.TryGetValue(peer.Id, out var shared) && Same(shared, peer)) return shared;
        var thin = new Node { Id = shared?.Id ?? peer.Id, NodeKey = peer.NodeKey, EndpointsVersion = peer.EndpointsVersion, EndpointsUnknown = peer.EndpointsUnknown };
        thin.Endpoints.AddRange(peer.Endpoints);
        _latest[thin.Id] = thin;
        return thin;
    }

    private static bool Same(Node thin, Node peer) =>
        thin.EndpointsVersion == peer.EndpointsVersion && thin.EndpointsUnknown == peer.EndpointsUnknown && thin.NodeKey.Equals(peer.NodeKey)
        && thin.Endpoints.SequenceEqual(peer.Endpoints);
}
