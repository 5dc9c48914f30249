using System.Collections.Immutable;
using Akka.Actor;
using Weft.Contracts.Control;

namespace Weft.NodeAgent.Control;

// The ControlClient actor's protocol: what the rest of the agent may ask of it, and what it reports.

/// <summary>Where the agent stands with the coordinator.</summary>
public enum ControlState
{
    /// <summary>Dialling, or waiting to dial again after a failure.</summary>
    Connecting,
    /// <summary>Connected; registration sent.</summary>
    Registering,
    /// <summary>Registered without a key; an admin must approve the device.</summary>
    PendingApproval,
    /// <summary>Registered without a key in a tailnet with an identity provider: a person must open the login link (<see cref="AgentStatus.LoginUrl"/>) and sign in.</summary>
    WaitingForLogin,
    /// <summary>Registered, authorised, and receiving its netmap.</summary>
    Running,
    /// <summary>Not logged in yet, refused for good (bad auth key, expired, deleted), or logged out: <c>weft-agent up</c> or <c>login</c> with an auth key is needed.</summary>
    NeedsLogin,
    /// <summary>Turned off by <c>weft-agent down</c>: no stream, no tunnels, until <c>weft-agent up</c>.</summary>
    Stopped,
}

public static class ControlStates
{
    /// <summary>Turned off (<c>down</c>) or refused for good: no stream, and no tunnels or paths until <c>up</c>.</summary>
    public static bool IsIdle(this ControlState state) => state is ControlState.Stopped or ControlState.NeedsLogin;
}

/// <summary><c>weft-agent down</c>: no stream and no tunnels until <c>up</c> (a <see cref="LogIn"/> that connects).</summary>
public sealed record TakeDown
{
    public static readonly TakeDown Instance = new();
}

/// <summary>How the agent joins: where, as whom, and what it offers. Changed at run time by <see cref="LogIn"/>.</summary>
public sealed record ControlLogin(IReadOnlyList<Uri> Coordinators, string Hostname, string? Tailnet, string? AuthKey, bool ForceReauth, ImmutableArray<string> AdvertisedRoutes)
{
    /// <summary>No coordinator yet: the daemon waits for <c>weft-agent up --login-server …</c>.</summary>
    public bool HasCoordinators => Coordinators.Count > 0;

    public bool SameCoordinators(ControlLogin other) => Coordinators.Select(u => u.ToString()).SequenceEqual(other.Coordinators.Select(u => u.ToString()));

    // Dead letters and debug logs print messages: never the auth key.
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append($"Coordinators = [{string.Join(", ", Coordinators)}], Hostname = {Hostname}, Tailnet = {Tailnet}, AuthKey = {(AuthKey is null ? "null" : "(secret)")}, ");
        builder.Append($"ForceReauth = {ForceReauth}, AdvertisedRoutes = [{(AdvertisedRoutes.IsDefault ? "" : string.Join(", ", AdvertisedRoutes))}]");
        return true;
    }
}

/// <summary>
/// New login settings for a running agent (<c>up</c>, <c>login</c>, <c>set</c>). With
/// <paramref name="Connect"/> (up, login) an agent that is down, logged out or refused dials again;
/// without it (set) the settings wait for the next <c>up</c>. A running agent moves only if the change
/// needs it: other coordinators, an auth key to use, or another tailnet; a new hostname or routes are
/// reported on the stream it has. Replies <see cref="AgentStatus"/> once the change is taken.
/// </summary>
public sealed record LogIn(ControlLogin Login, bool Connect);

/// <summary>
/// Logs out: the coordinator expires this device, and the agent forgets it (device id, netmap
/// cache, node key). Replies <see cref="LogoutResult"/>.
/// </summary>
public sealed record LogOut
{
    public static readonly LogOut Instance = new();
}

public sealed record LogoutResult(bool CoordinatorTold, string Detail);

/// <summary>
/// The node key the data plane must use, as hex (the receiver makes its own key object). Sent to
/// watchers when they register and after every rotation (<paramref name="Rotated"/>).
/// </summary>
public sealed record NodeKeyChanged(string PrivateKeyHex, bool Rotated)
{
    // Dead letters and debug logs print messages: never the private key.
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append($"PrivateKeyHex = (secret), Rotated = {Rotated}");
        return true;
    }
}

/// <summary>
/// The disco key this agent runs with (fresh every start; the coordinator tells peers its public
/// half). Sent to watchers when they register.
/// </summary>
public sealed record DiscoKeyChanged(string PrivateKeyHex)
{
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("PrivateKeyHex = (secret)");
        return true;
    }
}

/// <summary>
/// The relays this device may use and its current ticket for them. Relay nodes without a host are
/// reached at <paramref name="ControlHost"/>, the host of the coordinator that sent the map. Sent to
/// watchers when it changes and when they register.
/// </summary>
public sealed record RelayAccessChanged(RelayMap Map, byte[] Ticket, DateTimeOffset TicketExpiry, string ControlHost);

/// <summary>The agent's own endpoints changed (the data plane, or a static list); the coordinator hears them at once.</summary>
public sealed record SetEndpoints(ImmutableArray<string> Endpoints, int HomeRelay);

/// <summary>Rotate the node key now rather than when it nears expiry.</summary>
public sealed record RotateNodeKeyNow
{
    public static readonly RotateNodeKeyNow Instance = new();
}

/// <summary>Drops the stream and dials again after <paramref name="After"/>; the netmap resumes from its version.</summary>
public sealed record Reconnect(TimeSpan After);

/// <summary>Asks for an <see cref="AgentStatus"/>.</summary>
public sealed record GetAgentStatus
{
    public static readonly GetAgentStatus Instance = new();
}

/// <summary>Registers <paramref name="Watcher"/> for <see cref="NetMapChanged"/> and <see cref="ControlStateChanged"/> (it gets the current ones at once).</summary>
public sealed record WatchControl(IActorRef Watcher);

/// <summary>
/// The netmap changed. <see cref="Touch"/> says what changed since the previous one this watcher got
/// (every change reaches every watcher, in order), so a watcher that applied that one may update
/// only the peers it names.
/// </summary>
public sealed record NetMapChanged(NetMapView View, NetMapApplied How)
{
    public NetMapTouch Touch { get; init; } = NetMapTouch.Everything;
}

public sealed record ControlStateChanged(ControlState State, string? Code, string Detail);

/// <summary>
/// The netmap is void: the device was deleted, logged out, or registered again as another device. A
/// watcher drops the view it holds (it must not apply it again when the agent next comes up) and waits
/// for the next <see cref="NetMapChanged"/>.
/// </summary>
public sealed class NetMapForgotten
{
    public static readonly NetMapForgotten Instance = new();
}

/// <summary>Everything <c>weft-agent status</c> shows.</summary>
public sealed record AgentStatus(
    ControlState State,
    string? Code,
    string Detail,
    string? Coordinator,
    string MachineKey,
    string NodeKey,
    string? DeviceId,
    string? TailnetId,
    ulong NetMapVersion,
    PeerStatus? Self,
    IReadOnlyList<PeerStatus> Peers)
{
    /// <summary>While <see cref="ControlState.WaitingForLogin"/>: the link to open and sign in at.</summary>
    public string? LoginUrl { get; init; }

    /// <summary>What the data plane routes through the tunnel: the exit node in use and the installed routes (filled in by the local API).</summary>
    public Agent.RoutingStatus? Routing { get; init; }

    /// <summary>Each peer with its WireGuard tunnel (matched by node key), from the data plane's statistics.</summary>
    public AgentStatus WithTunnels(IEnumerable<Tunnels.TunnelStats> tunnels)
    {
        var byKey = tunnels.ToDictionary(t => "nodekey:" + t.PublicKey);
        return this with { Peers = [.. Peers.Select(p => p with { Tunnel = byKey.GetValueOrDefault(p.NodeKey) })] };
    }
}

public sealed record PeerStatus(
    string Id, string Name, string Fqdn, IReadOnlyList<string> Addresses, IReadOnlyList<string> Endpoints, bool Online,
    DateTimeOffset? LastSeen, DateTimeOffset? KeyExpiry, string NodeKey, string Status, IReadOnlyList<string> Tags, string User)
{
    /// <summary>The WireGuard tunnel to this peer (endpoint in use, last handshake, bytes), when the agent runs its data plane.</summary>
    public Tunnels.TunnelStats? Tunnel { get; init; }

    /// <summary>The approved subnet routes this node serves.</summary>
    public IReadOnlyList<string> Routes { get; init; } = [];

    /// <summary>An approved exit node (choose it with <c>--exit-node</c>).</summary>
    public bool ExitNode { get; init; }

    /// <summary>Only on self: every route this device advertises, approved or not.</summary>
    public IReadOnlyList<string>? AdvertisedRoutes { get; init; }

    public static PeerStatus From(Node node) => new(
        node.Id, node.Name, node.Fqdn, [.. node.Addresses], [.. node.Endpoints], node.Online,
        node.LastSeen?.ToDateTimeOffset(), node.KeyExpiry?.ToDateTimeOffset(),
        node.NodeKey.Length == 32 ? "nodekey:" + Convert.ToHexStringLower(node.NodeKey.Span) : "",
        node.Status.Length > 0 ? node.Status : node.Expired ? "expired" : "active", [.. node.Tags], node.User)
    {
        Routes = [.. node.Routes],
        ExitNode = node.ExitNode,
        AdvertisedRoutes = node.Status.Length > 0 ? [.. node.AdvertisedRoutes] : null,
    };
}
