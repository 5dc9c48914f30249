using Weft.Contracts.Control;

namespace Weft.NodeAgent.Control;

/// <summary>What the client must do after the netmap session took in a message or was checked.</summary>
/// <param name="Applied">What the message did to the store (null for a check or an UpToDate).</param>
/// <param name="SubscribeFrom">When set, send <c>Subscribe</c> with this version (0 asks for a full map).</param>
/// <param name="Stale">The coordinator stopped answering for the netmap: this stream is no use, reconnect.</param>
public readonly record struct MapStep(NetMapApplied? Applied = null, ulong? SubscribeFrom = null, bool Stale = false)
{
    public static readonly MapStep None = new();
}

/// <summary>
/// Turns one control stream's map messages into the agent's netmap (like Tailscale's
/// <c>mapSession</c>): a full map, then deltas that must each continue from the version held.
/// Pure and single-threaded (the ControlClient owns it), so it is tested without actors or sockets.
/// <para>
/// Every new stream starts fresh (<see cref="BeginStream"/>): it resumes from the version held, or
/// asks for a full map. Gaps are never silent: a delta that does not continue from our version asks
/// for a full map, and when the stream has been quiet for <c>verifyAfter</c> the session asks the
/// coordinator to confirm the version it holds (the coordinator answers with the missing deltas, a
/// full map, or UpToDate). An ask that stays unanswered for <c>answerTimeout</c> marks the stream
/// stale: a session whose coordinator lost track of it reconnects rather than wait forever.
/// </para>
/// <para>Every <c>now</c> is a reading of the monotonic clock, never wall time.</para>
/// </summary>
/// <param name="keepPeer">What the store keeps of each peer (null: all of it).</param>
public sealed class NetMapSession(TimeSpan verifyAfter, TimeSpan answerTimeout, Func<Node, Node>? keepPeer = null)
{
    private TimeSpan _lastMapMessage;
    private TimeSpan? _askedAt;
    private bool _awaitingFullMap;

    public NetMapStore Store { get; } = new(keepPeer);

    /// <summary>The map came from the disk cache and nothing live has replaced it yet: any full map wins, whatever its version.</summary>
    public bool MapIsCached { get; private set; }

    public bool AwaitingFullMap => _awaitingFullMap;

    /// <summary>Starts from the cached map (agent start while no coordinator answers). True if the cache held one.</summary>
    public bool LoadCached(NetMap? cached)
    {
        if (cached is null || Store.Apply(cached) != NetMapApplied.Replaced) return false;
        MapIsCached = true;
        return true;
    }

    /// <summary>A new stream is registered: the version to subscribe with (0: a full map).</summary>
    public ulong BeginStream(TimeSpan now)
    {
        _awaitingFullMap = !Store.HasMap;
        _lastMapMessage = now;
        _askedAt = now;
        return Store.HasMap ? Store.Version : 0;
    }

    public MapStep OnNetMap(NetMap map, TimeSpan now)
    {
        if (MapIsCached) Store.Clear(); // the live map replaces the cached one whatever its version
        MapIsCached = false;
        _awaitingFullMap = false;
        Answered(now);
        return new MapStep(Store.Apply(map));
    }

    public MapStep OnDelta(NetMapDelta delta, TimeSpan now)
    {
        _lastMapMessage = now;
        if (_awaitingFullMap) return MapStep.None; // a full map is on its way; deltas before it are of no use
        var applied = Store.Apply(delta);
        switch (applied)
        {
            case NetMapApplied.Patched:
                MapIsCached = false;
                Answered(now);
                return new MapStep(applied);
            case NetMapApplied.Gap:
                return AskForFullMap(applied, now);
            default:
                Answered(now); // a duplicate after a resume: the stream is alive all the same
                return new MapStep(applied);
        }
    }

    /// <summary>The coordinator confirmed a version. Ours, normally; anything else means our map diverged.</summary>
    public MapStep OnUpToDate(ulong version, TimeSpan now)
    {
        _lastMapMessage = now;
        if (_awaitingFullMap) return MapStep.None;
        if (version != Store.Version) return AskForFullMap(null, now);
        Answered(now);
        return MapStep.None;
    }

    /// <summary>Called periodically while the stream is up: verify a quiet stream, give up on one that stopped answering.</summary>
    public MapStep Check(TimeSpan now)
    {
        if (_askedAt is { } asked)
            return now - asked > answerTimeout ? new MapStep(Stale: true) : MapStep.None;
        if (now - _lastMapMessage < verifyAfter) return MapStep.None;
        _askedAt = now;
        return new MapStep(SubscribeFrom: Store.HasMap ? Store.Version : 0);
    }

    /// <summary>The device is gone (deleted, logged out): its map goes.</summary>
    public void Forget()
    {
        Store.Clear();
        MapIsCached = false;
        _awaitingFullMap = false;
        _askedAt = null;
    }

    private MapStep AskForFullMap(NetMapApplied? applied, TimeSpan now)
    {
        _awaitingFullMap = true;
        _askedAt = now;
        return new MapStep(applied, SubscribeFrom: 0);
    }

    private void Answered(TimeSpan now)
    {
        _lastMapMessage = now;
        _askedAt = null;
    }
}
