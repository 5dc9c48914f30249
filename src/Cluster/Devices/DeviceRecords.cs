using Weft.Cluster.Persistence;

namespace Weft.Cluster.Devices;

public static class DeviceRecords
{
    public static RecordCodecs AddDeviceRecords(this RecordCodecs codecs) => codecs
        // Older journals also carry keys and hostinfo in these records; they live in the tailnet now and are not read.
        .Add<DeviceInitialized, Stored.DeviceInitialized>("dev.initialized", e => new() { TailnetId = e.TailnetId }, p => new(p.TailnetId))
        .Add<DeviceHostinfoReported, Stored.DeviceHostinfoReported>("dev.hostinfo",
            e => new() { Hostname = e.Hostname, Os = e.Os, AgentVersion = e.AgentVersion },
            p => new(p.Hostname, p.Os, p.AgentVersion))
        .Add<DeviceNodeKeyChanged, Stored.DeviceNodeKeyChanged>("dev.node-key", e => new() { NodeKey = e.NodeKey }, p => new(p.NodeKey))
        .Add<DeviceIncarnationStarted, Stored.DeviceIncarnationStarted>("dev.incarnation", e => new() { Incarnation = e.Incarnation }, p => new(p.Incarnation))
        .Add<DeviceRemoved, Stored.DeviceRemoved>("dev.removed", _ => new(), _ => new())
        .Add<DeviceState, Stored.DeviceSnapshot>("dev.snapshot",
            s => new() { DeviceId = s.DeviceId, TailnetId = s.TailnetId, Incarnation = s.Incarnation, Removed = s.Removed },
            p => new(p.DeviceId, p.TailnetId, p.Incarnation, p.Removed));
}
