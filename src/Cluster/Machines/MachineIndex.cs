using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Weft.Cluster.Messaging;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Machines;

// Which tailnet and device a machine key belongs to: looked up when an agent's stream arrives,
// because the stream is authenticated by the machine key and nothing else. One small sharded
// entity per machine key.

public interface IMachineMessage : IClusterMessage
{
    string MachineKey { get; }
}

public interface IMachineEvent : IStoredRecord;

[WireName("machine.bind")]
public sealed record BindMachine(string MachineKey, string TailnetId, string DeviceId) : IMachineMessage;

/// <summary>Forgets the binding if it still points at <paramref name="DeviceId"/> (the device was deleted).</summary>
[WireName("machine.unbind")]
public sealed record UnbindMachine(string MachineKey, string DeviceId) : IMachineMessage;

[WireName("machine.lookup")]
public sealed record LookupMachine(string MachineKey) : IMachineMessage;

[WireName("machine.binding")]
public sealed record MachineBinding(string MachineKey, string TailnetId, string DeviceId) : IClusterMessage;

public sealed record MachineBound(string TailnetId, string DeviceId) : IMachineEvent;

public sealed record MachineUnbound : IMachineEvent;

public sealed record MachineIndexState(string MachineKey, string? TailnetId, string? DeviceId) : IStoredRecord
{
    public Decision<IMachineEvent> Process(IMachineMessage command) => command switch
    {
        BindMachine b when b.TailnetId == TailnetId && b.DeviceId == DeviceId => Decision<IMachineEvent>.Unchanged,
        BindMachine b => Decision<IMachineEvent>.Accept(new MachineBound(b.TailnetId, b.DeviceId)),
        UnbindMachine u when u.DeviceId == DeviceId => Decision<IMachineEvent>.Accept(new MachineUnbound()),
        UnbindMachine => Decision<IMachineEvent>.Unchanged,
        _ => throw new ArgumentOutOfRangeException(nameof(command)),
    };

    public MachineIndexState Apply(IMachineEvent @event) => @event switch
    {
        MachineBound e => this with { TailnetId = e.TailnetId, DeviceId = e.DeviceId },
        MachineUnbound => this with { TailnetId = null, DeviceId = null },
        _ => throw new ArgumentOutOfRangeException(nameof(@event)),
    };

    public object Lookup() => TailnetId is not null && DeviceId is not null
        ? new MachineBinding(MachineKey, TailnetId, DeviceId)
        : Rejection.NotFound($"machine {MachineKey} is not registered");
}

public sealed class MachineIndexActor(string machineKey, PersistenceSettings settings)
    : EventSourcedEntity<MachineIndexState, IMachineEvent>(settings, new MachineIndexState(machineKey, null, null))
{
    /// <summary>
    /// How long an entity stays after its last message. Lifecycle: sharding starts it on a lookup or a
    /// bind and stops it this long after; everything it knows is in its journal, so a restart, a
    /// passivation or a move loses nothing, and nobody needs to re-create it.
    /// </summary>
    public static readonly TimeSpan DefaultPassivateIdleAfter = TimeSpan.FromMinutes(1);

    public override string PersistenceId => "machine-" + State.MachineKey;

    /// <summary>
    /// A machine key's journal is a bind per registration into a new device and an unbind per deletion: a
    /// few events for good. Every registration recovers this entity first (it stops a minute after), so
    /// skipping the snapshot store saves a database round trip on each join.
    /// </summary>
    protected override bool KeepsSnapshots => false;

    public static Props PropsFor(string machineKey, PersistenceSettings settings) =>
        Props.Create(() => new MachineIndexActor(machineKey, settings)).WithMailbox(Hosting.CompactMailbox.Id);

    protected override MachineIndexState Apply(MachineIndexState state, IMachineEvent @event) => state.Apply(@event);

    /// <summary>
    /// Unbound, the machine key's journal says nothing an empty one does not: it goes. Every device that ever
    /// registered (an ephemeral CI runner makes a machine key per job) would otherwise leave its rows for good.
    /// </summary>
    protected override void OnEventsPersisted(IReadOnlyList<IMachineEvent> events, MachineIndexState before, MachineIndexState after)
    {
        if (after.TailnetId is null) ForgetAllEvents();
    }

    protected override bool IsCommand(object message) => message is BindMachine or UnbindMachine;

    protected override Decision<IMachineEvent> Decide(MachineIndexState state, object command) => state.Process((IMachineMessage)command);

    protected override bool TryAnswer(MachineIndexState state, object message, out object reply)
    {
        reply = message is LookupMachine ? state.Lookup() : null!;
        return reply is not null;
    }

    protected override object Acknowledge(object command, MachineIndexState stateAfter) => stateAfter.Lookup();
}

public static class MachineIndexRegistration
{
    /// <param name="passivateIdleAfter">How long an entity stays after its last message (<see cref="MachineIndexActor.DefaultPassivateIdleAfter"/>).</param>
    public static AkkaConfigurationBuilder WithMachineIndex(this AkkaConfigurationBuilder builder, PersistenceSettings persistence, int numberOfShards,
        TimeSpan passivateIdleAfter) => builder
        .WithShardRegion<MachineIndexActor>("machine",
            machineKey => MachineIndexActor.PropsFor(machineKey, persistence),
            HashCodeMessageExtractor.Create(numberOfShards, message => (message as IMachineMessage)?.MachineKey!),
            PersistentShards.OnDemand(passivateIdleAfter));
}
