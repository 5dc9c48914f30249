using System.Collections.Immutable;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Devices;

/// <summary>One device's own record: keys, what it reported about itself, and its version epoch.</summary>
public sealed record DeviceState(
    string DeviceId,
    string TailnetId,
    string MachineKey,
    string NodeKey,
    string DiscoKey,
    string Hostname,
    string Os,
    string AgentVersion,
    long Incarnation,
    bool Removed) : IStoredRecord
{
    public static DeviceState Empty(string deviceId) => new(deviceId, "", "", "", "", "", "", "", 0, false);

    public bool IsInitialized => TailnetId.Length > 0;

    public bool Equals(DeviceState? other) =>
        other is not null && DeviceId == other.DeviceId && TailnetId == other.TailnetId && MachineKey == other.MachineKey && NodeKey == other.NodeKey
        && DiscoKey == other.DiscoKey && Hostname == other.Hostname && Os == other.Os && AgentVersion == other.AgentVersion
        && Incarnation == other.Incarnation && Removed == other.Removed;

    public override int GetHashCode() => DeviceId.GetHashCode();

    public Decision<IDeviceEvent> Process(IDeviceCommand command)
    {
        if (Removed && command is not MarkDeviceRemoved)
            return Decision<IDeviceEvent>.Reject(new Rejection(Weft.Contracts.Control.ControlErrorCodes.DeviceDeleted, $"device {DeviceId} was deleted"));
        return command switch
        {
            InitializeDevice c when IsInitialized && c.TailnetId != TailnetId =>
                Decision<IDeviceEvent>.Reject(Rejection.Conflict($"device {DeviceId} belongs to another tailnet")),
            InitializeDevice c when IsInitialized && c.MachineKey == MachineKey && c.NodeKey == NodeKey && c.DiscoKey == DiscoKey && c.Hostname == Hostname && c.Os == Os =>
                Decision<IDeviceEvent>.Unchanged,
            InitializeDevice c => Decision<IDeviceEvent>.Accept(new DeviceInitialized(c.TailnetId, c.MachineKey, c.NodeKey, c.DiscoKey, c.Hostname, c.Os)),
            _ when !IsInitialized => Decision<IDeviceEvent>.Reject(Rejection.NotFound($"device {DeviceId} does not exist")),
            ReportHostinfo c => c.Hostname == Hostname && c.Os == Os && c.AgentVersion == AgentVersion
                ? Decision<IDeviceEvent>.Unchanged
                : Decision<IDeviceEvent>.Accept(new DeviceHostinfoReported(c.Hostname, c.Os, c.AgentVersion)),
            ApplyNodeKey c => c.NewNodeKey == NodeKey ? Decision<IDeviceEvent>.Unchanged : Decision<IDeviceEvent>.Accept(new DeviceNodeKeyChanged(c.NewNodeKey)),
            StartIncarnation => Decision<IDeviceEvent>.Accept(new DeviceIncarnationStarted(Incarnation + 1)),
            MarkDeviceRemoved => Decision<IDeviceEvent>.Accept(new DeviceRemoved()),
            _ => throw new ArgumentOutOfRangeException(nameof(command), command.GetType().Name, "not a device command"),
        };
    }

    public DeviceState Apply(IDeviceEvent @event) => @event switch
    {
        DeviceInitialized e => this with { TailnetId = e.TailnetId, MachineKey = e.MachineKey, NodeKey = e.NodeKey, DiscoKey = e.DiscoKey, Hostname = e.Hostname, Os = e.Os },
        DeviceHostinfoReported e => this with { Hostname = e.Hostname, Os = e.Os, AgentVersion = e.AgentVersion },
        DeviceNodeKeyChanged e => this with { NodeKey = e.NodeKey },
        DeviceIncarnationStarted e => this with { Incarnation = e.Incarnation },
        DeviceRemoved => this with { Removed = true },
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not a device event"),
    };
}
