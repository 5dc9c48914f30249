using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;

namespace Weft.Cluster.Replication;

/// <summary>
/// Publishes the state of a single-writer entity (the API-key registry, the tailnet directory) into
/// distributed data, so that every node reads it locally and losing the node that hosts the entity
/// stops no read (see <see cref="Replica{T}"/>). The register's clock is the entity's journal
/// sequence number, so a newer state always wins, whichever node the entity ran on.
/// <para>
/// Writes go to every reachable node before the entity answers the command that caused them: an
/// admin who created a key or a tailnet on one node can use it on any other at once. A node that is
/// unreachable gets it by gossip when it comes back; the answer does not wait for it.
/// </para>
/// </summary>
public sealed class ReplicatedState<T>(ActorSystem system, string keyId) where T : class
{
    private static readonly TimeSpan WriteTimeout = TimeSpan.FromSeconds(3);

    private readonly IActorRef _replicator = DistributedData.Get(system).Replicator;
    private readonly UniqueAddress _self = Akka.Cluster.Cluster.Get(system).SelfUniqueAddress;
    private readonly List<(long Version, IActorRef ReplyTo, object Reply)> _held = [];
    private long _confirmed = -1;
    private long _published = -1;

    public LWWRegisterKey<T> Key { get; } = new(keyId);

    /// <summary>Publishes <paramref name="state"/> as of journal sequence number <paramref name="version"/>. Call from the entity's own thread.</summary>
    public void Publish(T state, long version, IActorRef self)
    {
        _published = Math.Max(_published, version);
        Clock<T> clock = (_, _) => version;
        _replicator.Tell(Dsl.Update(Key, new LWWRegister<T>(_self, state, clock), new WriteAll(WriteTimeout), version,
            register => register.WithValue(_self, state, clock)), self);
    }

    /// <summary>Sends <paramref name="reply"/> once the state up to <paramref name="version"/> is replicated (at once if it already is).</summary>
    public void ReplyWhenReplicated(long version, IActorRef replyTo, object reply)
    {
        if (version <= _confirmed || version > _published) replyTo.Tell(reply);
        else _held.Add((version, replyTo, reply));
    }

    /// <summary>
    /// The entity stops (a hand-off, a passivation) with answers still waiting for replication: they
    /// go now. Their changes are stored in the journal and published to this node's replica, and
    /// gossip takes them to the others; a caller left without its answer would time out on a change
    /// that was made (and an issued API key's secret would never be shown). Call from PostStop.
    /// </summary>
    public void ReleaseHeld()
    {
        foreach (var held in _held) held.ReplyTo.Tell(held.Reply);
        _held.Clear();
    }

    /// <summary>Handles the replicator's answer to a publish; false for any other message.</summary>
    public bool TryHandle(object message)
    {
        long version;
        switch (message)
        {
            case UpdateSuccess success when success.Key.Equals(Key) && success.Request is long ok:
                version = ok;
                break;
            case UpdateTimeout timeout when timeout.Key.Equals(Key) && timeout.Request is long late:
                // Stored in the journal and in this node's replica; gossip carries it to the nodes that did not answer.
                version = late;
                break;
            default:
                return false;
        }
        _confirmed = Math.Max(_confirmed, version);
        foreach (var held in _held.Where(h => h.Version <= _confirmed).ToList())
        {
            _held.Remove(held);
            held.ReplyTo.Tell(held.Reply);
        }
        return true;
    }
}
