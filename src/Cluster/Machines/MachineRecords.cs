using Weft.Cluster.Persistence;

namespace Weft.Cluster.Machines;

public static class MachineRecords
{
    public static RecordCodecs AddMachineRecords(this RecordCodecs codecs) => codecs
        .Add<MachineBound, Stored.MachineBound>("mach.bound", e => new() { TailnetId = e.TailnetId, DeviceId = e.DeviceId }, p => new(p.TailnetId, p.DeviceId))
        .Add<MachineUnbound, Stored.MachineUnbound>("mach.unbound", _ => new(), _ => new())
        .Add<MachineIndexState, Stored.MachineSnapshot>("mach.snapshot",
            s => new() { MachineKey = s.MachineKey, TailnetId = s.TailnetId ?? "", DeviceId = s.DeviceId ?? "" },
            p => new(p.MachineKey, p.TailnetId.Length == 0 ? null : p.TailnetId, p.DeviceId.Length == 0 ? null : p.DeviceId));
}
