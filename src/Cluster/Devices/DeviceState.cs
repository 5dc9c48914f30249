using Weft.Cluster.Persistence;

namespace Weft.Cluster.Devices;

/// <summary>
/// What a device's stream needs to survive a restart: the tailnet it belongs to, its version epoch,
/// and whether it was removed (so that a late session is told so). Everything else about the device
/// is the tailnet's to keep.
/// </summary>
public sealed record DeviceState(string DeviceId, string TailnetId, long Incarnation, bool Removed) : IStoredRecord
{
    public static DeviceState Empty(string deviceId) => new(deviceId, "", 0, false);

    public bool IsInitialized => TailnetId.Length > 0;

    public Decision<IDeviceEvent> Process(IDeviceCommand command)
    {
        if (Removed && command is not MarkDeviceRemoved)
            return Decision<IDeviceEvent>.Reject(new Rejection(Weft.Contracts.Control.ControlErrorCodes.DeviceDeleted, $"device {DeviceId} was deleted"));
        return command switch
        {
            InitializeDevice c when IsInitialized && c.TailnetId != TailnetId =>
                Decision<IDeviceEvent>.Reject(Rejection.Conflict($"device {DeviceId} belongs to another tailnet")),
            InitializeDevice when IsInitialized => Decision<IDeviceEvent>.Unchanged,
            // The entity that initializes a device is the one its first session attaches to: its version epoch
            // is stored in the same write, so that attach waits for no second one (a join's critical path).
            InitializeDevice c => Decision<IDeviceEvent>.Accept(new DeviceInitialized(c.TailnetId), new DeviceIncarnationStarted(Incarnation + 1)),
            _ when !IsInitialized => Decision<IDeviceEvent>.Reject(Rejection.NotFound($"device {DeviceId} does not exist")),
            StartIncarnation => Decision<IDeviceEvent>.Accept(new DeviceIncarnationStarted(Incarnation + 1)),
            MarkDeviceRemoved when Removed => Decision<IDeviceEvent>.Unchanged,
            MarkDeviceRemoved => Decision<IDeviceEvent>.Accept(new DeviceRemoved()),
            _ => throw new ArgumentOutOfRangeException(nameof(command), command.GetType().Name, "not a device command"),
        };
    }

    public DeviceState Apply(IDeviceEvent @event) => @event switch
    {
        DeviceInitialized e => this with { TailnetId = e.TailnetId },
        DeviceIncarnationStarted e => this with { Incarnation = e.Incarnation },
        DeviceRemoved => this with { Removed = true },
        DeviceHostinfoReported or DeviceNodeKeyChanged => this,
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not a device event"),
    };
}
