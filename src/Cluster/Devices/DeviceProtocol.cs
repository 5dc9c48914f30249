using Akka.Actor;
using Weft.Cluster.Messaging;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Devices;

// The DeviceActor's protocol: a device's netmap stream (versions, recent deltas) and its link to the
// live session. What the device *is* (keys, name, addresses, endpoints, hostinfo) lives in the
// tailnet's device index, the one source of truth that admins and peers read; this entity keeps
// only what the stream needs: its tailnet, its version epoch, and whether it was removed; and, in
// memory, the agent's latest endpoints, which the tailnet does not journal.

/// <summary>Anything addressed to one device entity; sharding routes it by <see cref="DeviceId"/>.</summary>
public interface IDeviceMessage : IClusterMessage
{
    string DeviceId { get; }
}

public interface IDeviceCommand : IDeviceMessage;

public interface IDeviceEvent : IStoredRecord;

// Commands (stored)

/// <summary>The session registered this device in <paramref name="TailnetId"/>; repeating it is harmless. The first one also starts the entity's first version epoch.</summary>
[WireName("device.initialize")]
public sealed record InitializeDevice(string DeviceId, string TailnetId) : IDeviceCommand;

/// <summary>From the tailnet, once, when the device leaves it: its session ends with <paramref name="Message"/>, and so does any later one.</summary>
[WireName("device.mark-removed")]
public sealed record MarkDeviceRemoved(string DeviceId, string Message) : IDeviceCommand;

/// <summary>The first session of an activation starts a new version epoch, so versions never repeat. (A new device's first epoch is stored with its initialization.)</summary>
[WireName("device.start-incarnation")]
public sealed record StartIncarnation(string DeviceId) : IDeviceCommand;

// Stream and session

/// <summary>
/// A session wants the device's netmap stream, resuming after <paramref name="LastVersion"/> (0:
/// from scratch). Idempotent: the session sends it when its agent subscribes, again on a timer
/// (which keeps this entity awake and re-links it after a passivation, a move or a restart), and
/// whenever this entity's incarnation it watched has stopped. <paramref name="Confirm"/> (the agent
/// asked) makes an up-to-date stream answer <c>UpToDate</c> rather than nothing.
/// <paramref name="StartedAt"/> is when the session's stream opened (its coordinator's clock, in ticks;
/// 0: not known). An agent has one stream at a time, so of two sessions of a device the later one is
/// the agent's: a late attach from an earlier one (held up by a failover) ends that session instead of
/// taking the stream from the agent's.
/// <paramref name="RepeatedAt"/> marks the session's own repeats (its heartbeat, or an attach left
/// unanswered) with when the session sent them (its clock, UTC ticks; 0 for the agent's subscribe). Their
/// <paramref name="LastVersion"/> is what the session had passed on by then, which can be behind what
/// the entity has sent since: an entity that already started this session's stream sends nothing again
/// for a repeat sent before its latest message could have arrived (that is on its way, in order), and
/// resumes the stream for one sent later (a message lost between nodes).
/// </summary>
[WireName("device.attach")]
public sealed record AttachSession(string DeviceId, IActorRef Session, ulong LastVersion, bool Confirm, UpdateDeviceEndpoints? Endpoints = null,
    long StartedAt = 0, long RepeatedAt = 0) : IDeviceMessage;

/// <summary>
/// The session's agent reported new endpoints. The entity keeps the latest (it reports them again to
/// a tailnet incarnation that lost them) and passes them on to the tailnet, whose answer goes to the
/// sender. <paramref name="Endpoints"/> on <see cref="AttachSession"/> re-teaches a new incarnation of
/// this entity the same.
/// </summary>
[WireName("device.report-endpoints")]
public sealed record ReportEndpoints(string DeviceId, UpdateDeviceEndpoints Report) : IDeviceMessage;

/// <summary>
/// From the tailnet, when a heartbeat shows that this entity holds endpoints the tailnet has as unknown
/// (see <see cref="Tailnets.DeviceOnline.HoldsEndpoints"/>): the entity reports the newest it holds again.
/// </summary>
[WireName("device.report-endpoints-again")]
public sealed record ReportEndpointsAgain(string DeviceId) : IDeviceMessage;

/// <summary>The entity's answer to every attach: the session watches <c>Sender</c>, this incarnation of the entity.</summary>
/// <param name="EndpointsVersion">
/// The version of the newest endpoints report the entity holds (0: none). The session stamps the
/// agent's next report above it, so a coordinator whose clock is behind the one that stamped it still
/// makes a report that counts as newer.
/// </param>
[WireName("device.session-attached")]
public sealed record SessionAttached(string DeviceId, ulong Version, long EndpointsVersion = 0) : IClusterMessage;

/// <summary>
/// From the tailnet: what changed for this device's view since the last flush (protobuf
/// <c>NetMapDelta</c>, unversioned), or an instruction to resync or to end the stream. The tailnet
/// sends every change that concerns the device, whether or not it believes the device online, so
/// that the device's version moves with every change and a session can never miss one unseen.
/// </summary>
[WireName("device.peer-changes")]
public sealed record PeerChanges(string DeviceId, byte[] Delta, bool Resync, string? EndCode, string? EndMessage) : IDeviceMessage
{
    /// <summary>Its place among what the tailnet's incarnation sent this device (none: unnumbered).</summary>
    public FanOutStamp Stamp { get; init; }
}

/// <summary>
/// A tailnet incarnation numbers what it sends each device's entity (changes and full maps alike), one count
/// per device. Remoting delivers at most once: a link between nodes that drops, or a region not registered
/// yet on a node that is starting, loses a message and restarts nobody, and an unversioned change that is lost
/// leaves no gap in the device's versions. The count shows it: the entity that sees a gap, or a heartbeat that
/// says it heard less than was sent, starts the device again from a full map.
/// </summary>
/// <param name="Incarnation">The sending tailnet incarnation (random; 0: none).</param>
/// <param name="Sequence">1 for the first message this incarnation sent the device, and up by one for each.</param>
public readonly record struct FanOutStamp(long Incarnation, long Sequence)
{
    public bool IsNone => Incarnation == 0;

    /// <summary>Whether this follows <paramref name="last"/> (what the entity heard before) with nothing lost between.</summary>
    public bool Follows(FanOutStamp last) =>
        IsNone || (Incarnation == last.Incarnation ? Sequence <= last.Sequence + 1 : last.IsNone || Sequence == 1);
}

/// <summary>Where the device's stream stands (for admins, tests and the failover benchmark).</summary>
[WireName("device.get-stream")]
public sealed record GetDeviceStream(string DeviceId) : IDeviceMessage;

/// <summary><paramref name="Session"/> is the session's actor path when one is attached; <paramref name="Node"/> the address of the node running the entity.</summary>
[WireName("device.stream")]
public sealed record DeviceStreamInfo(string DeviceId, ulong Version, bool AwaitingFullMap, string? Session, string? Node = null) : IClusterMessage;

[WireName("device.ready")]
public sealed record DeviceReady(string DeviceId, long Incarnation) : IClusterMessage;

[WireName("device.done")]
public sealed record DeviceDone(string DeviceId) : IClusterMessage;

// To the session

/// <summary>A protobuf <c>ServerMessage</c> for the agent, ready to seal; <paramref name="Version"/> is its netmap version (0: not a netmap message).</summary>
[WireName("session.deliver")]
public sealed record DeliverToAgent(byte[] ServerMessage, ulong Version = 0) : IClusterMessage;

/// <summary>
/// The entity is restarting after a failure and forgot its session: attach again. (A restart keeps
/// the entity's reference, so the session's watch would not notice.)
/// </summary>
[WireName("session.attach-again")]
public sealed record AttachAgain(string DeviceId) : IClusterMessage;

/// <summary>The device will not serve this session any more (deleted, expired, or another session took over).</summary>
[WireName("session.ended")]
public sealed record SessionEnded(string Code, string Message) : IClusterMessage;

// Events

public sealed record DeviceInitialized(string TailnetId) : IDeviceEvent;

public sealed record DeviceIncarnationStarted(long Incarnation) : IDeviceEvent;

public sealed record DeviceRemoved : IDeviceEvent;

/// <summary>Retired: hostinfo lives in the tailnet's device index now. Read from older journals, never written, changes nothing.</summary>
public sealed record DeviceHostinfoReported(string Hostname, string Os, string AgentVersion) : IDeviceEvent;

/// <summary>Retired: the node key lives in the tailnet's device index now. Read from older journals, never written, changes nothing.</summary>
public sealed record DeviceNodeKeyChanged(string NodeKey) : IDeviceEvent;
