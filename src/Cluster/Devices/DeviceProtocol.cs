using System.Collections.Immutable;
using Akka.Actor;
using Weft.Cluster.Messaging;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Devices;

// The DeviceActor's protocol: the device's own record, its netmap stream (versions, recent deltas)
// and its link to the live session. Keys are lowercase hex. Endpoints are not here: they go from
// the session straight to the tailnet, which keeps them in its device index and fans them out.

/// <summary>Anything addressed to one device entity; sharding routes it by <see cref="DeviceId"/>.</summary>
public interface IDeviceMessage : IClusterMessage
{
    string DeviceId { get; }
}

public interface IDeviceCommand : IDeviceMessage;

public interface IDeviceEvent : IStoredRecord;

// Commands (stored)

[WireName("device.initialize")]
public sealed record InitializeDevice(string DeviceId, string TailnetId, string MachineKey, string NodeKey, string DiscoKey, string Hostname, string Os) : IDeviceCommand;

[WireName("device.report-hostinfo")]
public sealed record ReportHostinfo(string DeviceId, string Hostname, string Os, string AgentVersion) : IDeviceCommand;

/// <summary>From the tailnet: the device is gone; a later session is told so.</summary>
[WireName("device.mark-removed")]
public sealed record MarkDeviceRemoved(string DeviceId) : IDeviceCommand;

/// <summary>The tailnet accepted a rotation; the device records the new key.</summary>
[WireName("device.apply-node-key")]
public sealed record ApplyNodeKey(string DeviceId, string NewNodeKey, DateTimeOffset? KeyExpiry) : IDeviceCommand;

/// <summary>The first session of an activation starts a new version epoch, so versions never repeat.</summary>
[WireName("device.start-incarnation")]
public sealed record StartIncarnation(string DeviceId) : IDeviceCommand;

// Stream and session

/// <summary>A session wants the device's netmap stream, resuming after <paramref name="LastVersion"/> (0: from scratch).</summary>
[WireName("device.attach")]
public sealed record AttachSession(string DeviceId, IActorRef Session, ulong LastVersion) : IDeviceMessage;

/// <summary>From the session, with both key proofs already checked.</summary>
[WireName("device.rotate-key")]
public sealed record RequestNodeKeyRotation(string DeviceId, string OldNodeKey, string NewNodeKey, DateTimeOffset At) : IDeviceMessage;

/// <summary>
/// From the tailnet: what changed for this device's view since the last flush (protobuf
/// <c>NetMapDelta</c>, unversioned), or an instruction to resync or to end the stream.
/// </summary>
[WireName("device.peer-changes")]
public sealed record PeerChanges(string DeviceId, byte[] Delta, bool Resync, string? EndCode, string? EndMessage) : IDeviceMessage;

[WireName("device.ready")]
public sealed record DeviceReady(string DeviceId, long Incarnation) : IClusterMessage;

[WireName("device.done")]
public sealed record DeviceDone(string DeviceId) : IClusterMessage;

// To the session

/// <summary>A protobuf <c>ServerMessage</c> for the agent, ready to seal.</summary>
[WireName("session.deliver")]
public sealed record DeliverToAgent(byte[] ServerMessage) : IClusterMessage;

/// <summary>The device will not serve this session any more (deleted, expired, or another session took over).</summary>
[WireName("session.ended")]
public sealed record SessionEnded(string Code, string Message) : IClusterMessage;

// Events

public sealed record DeviceInitialized(string TailnetId, string MachineKey, string NodeKey, string DiscoKey, string Hostname, string Os) : IDeviceEvent;

public sealed record DeviceHostinfoReported(string Hostname, string Os, string AgentVersion) : IDeviceEvent;

public sealed record DeviceNodeKeyChanged(string NodeKey) : IDeviceEvent;

public sealed record DeviceIncarnationStarted(long Incarnation) : IDeviceEvent;

public sealed record DeviceRemoved : IDeviceEvent;
