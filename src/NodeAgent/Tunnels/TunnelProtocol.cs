using Weft.Contracts.Keys;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tunnels;

// Messages of the TunnelSupervisor and its PeerTunnels. Only local (never serialized).

/// <summary>
/// A peer's desired configuration, from a wg-quick file, the UAPI or the netmap. Null fields are
/// left as they are.
/// </summary>
public sealed record PeerConfig(Curve25519PublicKey PublicKey)
{
    public byte[]? PresharedKey { get; init; }
    public Endpoint? Endpoint { get; init; }
    public int? PersistentKeepaliveSeconds { get; init; }
    public bool ReplaceAllowedIps { get; init; }
    public IReadOnlyList<IpPrefix> AddAllowedIps { get; init; } = [];
    public IReadOnlyList<IpPrefix> RemoveAllowedIps { get; init; } = [];
    /// <summary>Only change an existing peer; never create one (UAPI <c>update_only</c>).</summary>
    public bool UpdateOnly { get; init; }
}

/// <summary>Applies a peer's configuration, creating the peer and its PeerTunnel if needed. Replies <see cref="PeerConfigured"/>.</summary>
public sealed record ConfigurePeer(PeerConfig Config);

public sealed record PeerConfigured(Curve25519PublicKey PublicKey, bool Created);

/// <summary>Removes a peer: its tunnel stops and its sessions are forgotten. Replies <see cref="PeerRemoved"/>.</summary>
public sealed record RemovePeer(Curve25519PublicKey PublicKey);

public sealed record PeerRemoved(Curve25519PublicKey PublicKey, bool Existed);

/// <summary>
/// Replaces the device's private key. A new identity drops every session; a node-key rotation
/// (<paramref name="Rotation"/>) keeps them and starts a handshake with every peer under the new
/// key, so that traffic does not stop while peers learn it. Replies <see cref="PrivateKeySet"/>.
/// </summary>
public sealed record SetPrivateKey(Curve25519PrivateKey? Key, bool Rotation = false);

public sealed record PrivateKeySet;

/// <summary>Removes every peer (UAPI <c>replace_peers</c>). Replies <see cref="PeersCleared"/>.</summary>
public sealed record ClearPeers;

public sealed record PeersCleared(int Removed);

/// <summary>
/// Makes the device's peers exactly these (the netmap's peers): adds the new ones, removes the
/// gone ones, re-keys peers that rotated their node key, and updates allowed IPs and endpoints.
/// Replies <see cref="MeshApplied"/>.
/// </summary>
public sealed record ApplyMesh(IReadOnlyList<MeshPeer> Peers)
{
    /// <summary>PathFinders choose these peers' endpoints: a new peer starts on its relay (if it has one), and later netmaps leave its endpoint alone.</summary>
    public bool PathManaged { get; init; }

    /// <summary>
    /// Start a handshake with every peer this creates (after <c>up</c> or a restart), so that peers
    /// holding a session from before learn at once that it is gone, instead of after their 15 s timeout.
    /// </summary>
    public bool Greet { get; init; }

    /// <summary>
    /// These are some of the netmap's peers, changed in place (their endpoints, presence or keys):
    /// they are updated, and the others are left as they are instead of removed.
    /// </summary>
    public bool PeersOnly { get; init; }
}

public sealed record MeshApplied(int Added, int Removed, int Rekeyed, int Updated);

/// <summary>
/// Told to the tunnels' parent after they restarted: the message they failed on is lost (Akka does not
/// deliver it again), and the engine may hold half of a mesh (peers removed, the new ones not yet added)
/// or the old private key. The parent tells them its key and its mesh again.
/// </summary>
public sealed record TunnelsRestarted(string Reason);

/// <summary>Asks for a <see cref="TunnelStats"/> of every peer.</summary>
public sealed class GetTunnelStats
{
    public static readonly GetTunnelStats Instance = new();
}

/// <summary>
/// One peer's tunnel as <c>weft-agent status</c> shows it (the key in hex, as in <c>nodekey:</c>), and
/// its path: "direct" to a UDP endpoint, "relay" through a relay region, or "none".
/// </summary>
public sealed record TunnelStats(string PublicKey, string? Endpoint, DateTimeOffset? LastHandshake, long RxBytes, long TxBytes)
{
    public string Path { get; init; } = "none";

    /// <summary>The largest inner packet the path carries (path MTU probing may prove more than the configured MTU).</summary>
    public int Mtu { get; init; }

    /// <summary>Handshakes completed with this peer since its tunnel was set up.</summary>
    public long Handshakes { get; init; }
}

public sealed record TunnelStatsReply(IReadOnlyList<TunnelStats> Tunnels);

// PeerTunnel messages

/// <summary>The packet path needs a session (or a fresh one).</summary>
public sealed class HandshakeNeeded
{
    public static readonly HandshakeNeeded Instance = new();
}

/// <summary>The peer's endpoint was moved by its path finder (relay to direct, or back).</summary>
public sealed class EndpointMoved
{
    public static readonly EndpointMoved Instance = new();
}

/// <summary>The responder's "next" keypair was confirmed by the initiator's first packet.</summary>
public sealed class KeypairConfirmed
{
    public static readonly KeypairConfirmed Instance = new();
}

/// <summary>An initiation from this peer, already decrypted by the supervisor.</summary>
public sealed record InitiationArrived(ConsumedInitiation Initiation, Endpoint Source);

/// <summary>A response to one of this peer's initiations (mac1 checked, not yet decrypted).</summary>
public sealed record ResponseArrived(byte[] Message, Endpoint Source);

/// <summary>A timer started on the packet path while the tunnel had none armed (see Peer.WakeTimers).</summary>
public sealed class TimersStarted
{
    public static readonly TimersStarted Instance = new();
}

/// <summary>Re-evaluates the peer's timers. Sent by the tunnel's single timer when its earliest deadline is due, and directly by tests that move a manual clock.</summary>
public sealed class EvaluateTimers
{
    public static readonly EvaluateTimers Instance = new();
}

/// <summary>Configuration that affects timers changed (persistent keepalive turned on sends one at once).</summary>
public sealed record PeerSettingsChanged(bool PersistentKeepaliveTurnedOn);

/// <summary>
/// The machine slept for <paramref name="Slept"/> (a laptop's lid closed). The monotonic clock that ages
/// sessions stood still meanwhile, so a session older than REJECT_AFTER_TIME in the peer's time still
/// looks fresh here, while the peer has dropped it: what is sent on it goes unanswered until the
/// new-handshake timer, 15 s later. A tunnel whose session the sleep outlived drops it, and the next
/// packet starts a handshake at once (an idle peer costs nothing).
/// </summary>
public sealed record MachineSlept(TimeSpan Slept);

/// <summary>Forces a new handshake now, as if the session were due for rekeying (UAPI and tests).</summary>
public sealed class Rekey
{
    public static readonly Rekey Instance = new();
}
