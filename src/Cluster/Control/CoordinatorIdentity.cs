using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Akka.Event;
using Akka.Persistence;
using PersistenceSettings = Weft.Cluster.Persistence.PersistenceSettings;
using Weft.Cluster.Hosting;
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

// The cluster-wide coordinator key, generated once and kept in the store, for deployments that do not
// configure one. It travels and rests sealed with the cluster secret (see ClusterSecret): the store,
// its backups and the cluster's messages never hold it in clear.

public interface IClusterKeyMessage : IClusterMessage;

/// <summary>Keep this key (sealed by the asking node) unless the cluster has one already; the answer is the cluster's.</summary>
[WireName("cluster-key.ensure")]
public sealed record EnsureCoordinatorKey(string SealedCandidate) : IClusterKeyMessage;

[WireName("cluster-key.is")]
public sealed record CoordinatorKeyIs(string SealedKey) : IClusterMessage;

public interface IClusterKeyEvent : IStoredRecord;

/// <summary>How versions before sealing stored the key (still read, and replaced by a sealed copy on first use).</summary>
public sealed record CoordinatorKeyCreated(string PrivateKey) : IClusterKeyEvent
{
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("PrivateKey = (secret)");
        return true;
    }
}

public sealed record CoordinatorKeySealed(string SealedKey) : IClusterKeyEvent;

public sealed record ClusterKeyState(string? SealedKey, string? ClearKey) : IStoredRecord
{
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append($"SealedKey = {(SealedKey is null ? "null" : "(sealed)")}, ClearKey = {(ClearKey is null ? "null" : "(secret)")}");
        return true;
    }
}

public sealed class ClusterKeyActor(PersistenceSettings settings, ClusterSecret secret)
    : EventSourcedEntity<ClusterKeyState, IClusterKeyEvent>(settings, new ClusterKeyState(null, null))
{
    public const string SealPurpose = "coordinator private key";

    public override string PersistenceId => "cluster-key";

    public static Props PropsFor(PersistenceSettings settings, ClusterSecret secret) => Props.Create(() => new ClusterKeyActor(settings, secret));

    protected override ClusterKeyState Apply(ClusterKeyState state, IClusterKeyEvent @event) => @event switch
    {
        CoordinatorKeyCreated clear => new(null, clear.PrivateKey),
        CoordinatorKeySealed sealedKey => new(sealedKey.SealedKey, null),
        _ => state,
    };

    protected override bool IsCommand(object message) => message is EnsureCoordinatorKey;

    protected override Decision<IClusterKeyEvent> Decide(ClusterKeyState state, object command) => state switch
    {
        { ClearKey: { } clear } => Decision<IClusterKeyEvent>.Accept(new CoordinatorKeySealed(secret.Seal(System.Text.Encoding.UTF8.GetBytes(clear), SealPurpose))),
        { SealedKey: null } => Decision<IClusterKeyEvent>.Accept(new CoordinatorKeySealed(((EnsureCoordinatorKey)command).SealedCandidate)),
        _ => Decision<IClusterKeyEvent>.Unchanged,
    };

    protected override void OnEventsPersisted(IReadOnlyList<IClusterKeyEvent> events, ClusterKeyState before, ClusterKeyState after)
    {
        if (before.ClearKey is null) return;
        Log.Info("The coordinator key is now stored sealed with the cluster secret; deleting its clear copy");
        // A snapshot of the sealed state comes first, so deleting every event (the journal keeps the last row, the sealed one) loses nothing.
        ForgetHistory(after);
    }

    /// <summary>
    /// A cluster born sealed has one event. One that an earlier version started in clear has its sealed
    /// copy as a later event, and the clear one below it unless the purge finished. A purge cut off (the
    /// node stopped after the sealing, before the snapshot or the deletion) would leave the clear copy in
    /// the journal for good: every recovery of such a cluster purges again. A purge that finished makes
    /// that a snapshot rewritten in place and a deletion of rows already gone.
    /// </summary>
    protected override void OnRecovered()
    {
        if (State.SealedKey is not null && LastSequenceNr > 1) ForgetHistory(State);
    }

    protected override object Acknowledge(object command, ClusterKeyState stateAfter) => new CoordinatorKeyIs(stateAfter.SealedKey!);

    public static RecordCodecs Records(RecordCodecs codecs) => codecs
        .Add<CoordinatorKeyCreated, Stored.CoordinatorKeyCreated>("key.coordinator-created", e => new() { PrivateKey = e.PrivateKey }, p => new(p.PrivateKey))
        .Add<CoordinatorKeySealed, Stored.CoordinatorKeyCreated>("key.coordinator-sealed", e => new() { SealedPrivateKey = e.SealedKey }, p => new(p.SealedPrivateKey))
        .Add<ClusterKeyState, Stored.CoordinatorKeyCreated>("key.coordinator-snapshot",
            s => new() { PrivateKey = s.ClearKey ?? "", SealedPrivateKey = s.SealedKey ?? "" },
            p => new(p.SealedPrivateKey.Length == 0 ? null : p.SealedPrivateKey, p.PrivateKey.Length == 0 ? null : p.PrivateKey));
}

public static class ClusterKeyRegistration
{
    public static AkkaConfigurationBuilder WithClusterKey(this AkkaConfigurationBuilder builder, PersistenceSettings persistence, ClusterSecret secret) => builder
        .WithShardRegion<ClusterKeyActor>("cluster-key",
            _ => ClusterKeyActor.PropsFor(persistence, secret),
            HashCodeMessageExtractor.Create(1, message => message is IClusterKeyMessage ? "coordinator" : null!),
            PersistentShards.OnDemand());
}
