using Weft.Cluster.Persistence;

namespace Weft.Cluster.Devices;

public static class DeviceRecords
{
    public static RecordCodecs AddDeviceRecords(this RecordCodecs codecs) => codecs
        .Add<DeviceInitialized, Stored.DeviceInitialized>("dev.initialized",
            e => new() { TailnetId = e.TailnetId, MachineKey = e.MachineKey, NodeKey = e.NodeKey, DiscoKey = e.DiscoKey, Hostname = e.Hostname, Os = e.Os },
            p => new(p.TailnetId, p.MachineKey, p.NodeKey, p.DiscoKey, p.Hostname, p.Os))
        .Add<DeviceHostinfoReported, Stored.DeviceHostinfoReported>("dev.hostinfo",
            e => new() { Hostname = e.Hostname, Os = e.Os, AgentVersion = e.AgentVersion },
            p => new(p.Hostname, p.Os, p.AgentVersion))
        .Add<DeviceNodeKeyChanged, Stored.DeviceNodeKeyChanged>("dev.node-key", e => new() { NodeKey = e.NodeKey }, p => new(p.NodeKey))
        .Add<DeviceIncarnationStarted, Stored.DeviceIncarnationStarted>("dev.incarnation", e => new() { Incarnation = e.Incarnation }, p => new(p.Incarnation))
        .Add<DeviceRemoved, Stored.DeviceRemoved>("dev.removed", _ => new(), _ => new())
        .Add<DeviceState, Stored.DeviceSnapshot>("dev.snapshot",
            s => new()
            {
                DeviceId = s.DeviceId, TailnetId = s.TailnetId, MachineKey = s.MachineKey, NodeKey = s.NodeKey, DiscoKey = s.DiscoKey,
                Hostname = s.Hostname, Os = s.Os, AgentVersion = s.AgentVersion,
                Incarnation = s.Incarnation, Removed = s.Removed,
            },
            p => new(p.DeviceId, p.TailnetId, p.MachineKey, p.NodeKey, p.DiscoKey, p.Hostname, p.Os, p.AgentVersion, p.Incarnation, p.Removed));
}
