using Akka.Actor;
using Akka.Configuration;
using Akka.Dispatch;
using Akka.Dispatch.MessageQueues;

namespace Weft.Cluster.Hosting;

/// <summary>
/// The mailbox of the actors there is one (or more) of per connected device: its session, its device
/// entity and its machine-index entity. Akka's default queue starts with a 32-slot segment (about
/// 1 KB with its bookkeeping) for every actor; this one starts at 4 slots, grows as a burst needs and
/// gives the room back once the burst has drained. It is a deque, as the persistent entities' stash
/// requires. Configured as <see cref="Id"/> (<see cref="Configuration"/>, loaded by the coordinator and the tests).
/// </summary>
public sealed class CompactMailbox(Settings settings, Config config) : MailboxType(settings, config), IProducesMessageQueue<CompactMessageQueue>
{
    public const string Id = "weft.compact-mailbox";

    public static readonly Config Configuration = ConfigurationFactory.ParseString($$"""
        weft.compact-mailbox.mailbox-type = "{{typeof(CompactMailbox).FullName}}, {{typeof(CompactMailbox).Assembly.GetName().Name}}"
        """);

    public override IMessageQueue Create(IActorRef owner, ActorSystem system) => new CompactMessageQueue();
}

/// <summary>
/// A ring of envelopes behind one lock: any number of senders, the one consumer the mailbox allows,
/// and messages put back in front (a stash unstashing). Small while quiet: 4 slots, doubled when full,
/// and back to 4 when a grown ring has emptied.
/// </summary>
public sealed class CompactMessageQueue : IMessageQueue, IUnboundedDequeBasedMessageQueueSemantics
{
    public const int InitialCapacity = 4;
    private readonly Lock _lock = new();
    private Envelope[] _ring = new Envelope[InitialCapacity];
    private int _head;
    private int _count;

    public bool HasMessages => Volatile.Read(ref _count) > 0;

    public int Count => Volatile.Read(ref _count);

    /// <summary>How many envelopes the ring has room for now.</summary>
    public int Capacity
    {
        get { lock (_lock) return _ring.Length; }
    }

    public void Enqueue(IActorRef receiver, Envelope envelope)
    {
        lock (_lock)
        {
            if (_count == _ring.Length) Grow();
            _ring[(_head + _count) % _ring.Length] = envelope;
            Volatile.Write(ref _count, _count + 1);
        }
    }

    public void EnqueueFirst(Envelope envelope)
    {
        lock (_lock)
        {
            if (_count == _ring.Length) Grow();
            _head = (_head + _ring.Length - 1) % _ring.Length;
            _ring[_head] = envelope;
            Volatile.Write(ref _count, _count + 1);
        }
    }

    public bool TryDequeue(out Envelope envelope)
    {
        lock (_lock)
        {
            if (_count == 0)
            {
                envelope = default;
                return false;
            }
            envelope = _ring[_head];
            _ring[_head] = default; // the message is the actor's now, not the queue's to keep alive
            _head = (_head + 1) % _ring.Length;
            Volatile.Write(ref _count, _count - 1);
            if (_count == 0)
            {
                _head = 0;
                if (_ring.Length > InitialCapacity) _ring = new Envelope[InitialCapacity];
            }
            return true;
        }
    }

    public void CleanUp(IActorRef owner, IMessageQueue deadletters)
    {
        while (TryDequeue(out var envelope)) deadletters.Enqueue(owner, envelope);
    }

    private void Grow()
    {
        var larger = new Envelope[_ring.Length * 2];
        for (var i = 0; i < _count; i++) larger[i] = _ring[(_head + i) % _ring.Length];
        _ring = larger;
        _head = 0;
    }
}
