using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Weft.Cluster.Messaging;
using Weft.Cluster.Persistence;
using Weft.Contracts.Keys;

namespace Weft.Cluster.Control;

/// <summary>The coordinator's static Noise key, once start-up has established it.</summary>
public sealed class CoordinatorIdentity
{
    private readonly TaskCompletionSource<Curve25519PrivateKey> _key = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task<Curve25519PrivateKey> Key => _key.Task;

    internal void Set(Curve25519PrivateKey key) => _key.TrySetResult(key);
}

/// <summary>
/// Refuses an initiation whose timestamp is not newer than the last one accepted from the same
/// machine key on this node. With the clock-skew check, a recorded initiation cannot be replayed.
/// </summary>
public sealed class HandshakeReplayGuard
{
    private readonly ConcurrentDictionary<MachineKey, DateTimeOffset> _latest = new();
    private int _accepted;

    public bool Accept(MachineKey machine, DateTimeOffset timestamp, DateTimeOffset now)
    {
        if (Interlocked.Increment(ref _accepted) % 1024 == 0)
        {
            // Entries older than the skew window can go: the skew check refuses such timestamps anyway.
            foreach (var (key, seen) in _latest)
                if (now - seen > Weft.Contracts.Control.ControlProtocol.MaxClockSkew * 2) _latest.TryRemove(key, out _);
        }
        while (true)
        {
            if (_latest.TryGetValue(machine, out var previous))
            {
                if (timestamp <= previous) return false;
                if (_latest.TryUpdate(machine, timestamp, previous)) return true;
            }
            else if (_latest.TryAdd(machine, timestamp))
            {
                return true;
            }
        }
    }
}

// The cluster-wide coordinator key, generated once and kept in the store, for deployments that do not configure one.

public interface IClusterKeyMessage : IClusterMessage;

[WireName("cluster-key.ensure")]
public sealed record EnsureCoordinatorKey(string CandidatePrivateKey) : IClusterKeyMessage;

[WireName("cluster-key.is")]
public sealed record CoordinatorKeyIs(string PrivateKey) : IClusterMessage;

public sealed record CoordinatorKeyCreated(string PrivateKey) : IStoredRecord;

public sealed record ClusterKeyState(string? PrivateKey) : IStoredRecord;

public sealed class ClusterKeyActor(PersistenceSettings settings) : EventSourcedEntity<ClusterKeyState, CoordinatorKeyCreated>(settings, new ClusterKeyState(null))
{
    public override string PersistenceId => "cluster-key";

    public static Props PropsFor(PersistenceSettings settings) => Props.Create(() => new ClusterKeyActor(settings));

    protected override ClusterKeyState Apply(ClusterKeyState state, CoordinatorKeyCreated @event) => new(@event.PrivateKey);

    protected override bool IsCommand(object message) => message is EnsureCoordinatorKey;

    protected override Decision<CoordinatorKeyCreated> Decide(ClusterKeyState state, object command) =>
        state.PrivateKey is null
            ? Decision<CoordinatorKeyCreated>.Accept(new CoordinatorKeyCreated(((EnsureCoordinatorKey)command).CandidatePrivateKey))
            : Decision<CoordinatorKeyCreated>.Unchanged;

    protected override object Acknowledge(object command, ClusterKeyState stateAfter) => new CoordinatorKeyIs(stateAfter.PrivateKey!);

    public static RecordCodecs Records(RecordCodecs codecs) => codecs
        .Add<CoordinatorKeyCreated, Stored.CoordinatorKeyCreated>("key.coordinator-created", e => new() { PrivateKey = e.PrivateKey }, p => new(p.PrivateKey))
        .Add<ClusterKeyState, Stored.CoordinatorKeyCreated>("key.coordinator-snapshot", s => new() { PrivateKey = s.PrivateKey ?? "" },
            p => new(p.PrivateKey.Length == 0 ? null : p.PrivateKey));
}

public static class ClusterKeyRegistration
{
    public static AkkaConfigurationBuilder WithClusterKey(this AkkaConfigurationBuilder builder, PersistenceSettings persistence) => builder
        .WithShardRegion<ClusterKeyActor>("cluster-key",
            _ => ClusterKeyActor.PropsFor(persistence),
            HashCodeMessageExtractor.Create(1, message => message is IClusterKeyMessage ? "coordinator" : null!),
            new ShardOptions());
}
