using Akka.Actor;
using Akka.Dispatch;
using Weft.Cluster.Hosting;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Hosting;

/// <summary>
/// The per-device actors' mailbox: first in, first out; what a stash puts back comes first; it grows
/// for a burst and shrinks after it; many senders lose nothing; and an actor on it stashes and
/// unstashes in order in a real actor system.
/// </summary>
public sealed class CompactMailboxTests() : Akka.TestKit.Xunit2.TestKit(TestActorSystems.WithWeftSerialization)
{
    private static Envelope Message(object message) => new(message, ActorRefs.NoSender);

    private static List<object> Drain(CompactMessageQueue queue)
    {
        var taken = new List<object>();
        while (queue.TryDequeue(out var envelope)) taken.Add(envelope.Message);
        return taken;
    }

    [Fact]
    public void Messages_come_out_in_order_across_growth_and_what_is_put_back_comes_first()
    {
        var queue = new CompactMessageQueue();
        Assert.False(queue.HasMessages);
        Assert.Equal(CompactMessageQueue.InitialCapacity, queue.Capacity);

        // Take two out first, so the ring has wrapped when it has to grow.
        for (var i = 0; i < 3; i++) queue.Enqueue(ActorRefs.Nobody, Message(i));
        Assert.True(queue.TryDequeue(out var zero) && (int)zero.Message == 0);
        Assert.True(queue.TryDequeue(out var one) && (int)one.Message == 1);
        for (var i = 3; i < 40; i++) queue.Enqueue(ActorRefs.Nobody, Message(i));
        queue.EnqueueFirst(Message("stashed-2"));
        queue.EnqueueFirst(Message("stashed-1"));
        Assert.Equal(40, queue.Count);
        Assert.True(queue.Capacity >= 40);

        var taken = Drain(queue);
        Assert.Equal(["stashed-1", "stashed-2", .. Enumerable.Range(2, 38).Cast<object>()], taken);
        // The burst is over: the room goes back.
        Assert.False(queue.HasMessages);
        Assert.Equal(CompactMessageQueue.InitialCapacity, queue.Capacity);
        Assert.False(queue.TryDequeue(out _));
    }

    [Fact]
    public void Put_back_into_an_empty_or_full_ring_still_comes_first()
    {
        var queue = new CompactMessageQueue();
        queue.EnqueueFirst(Message("only"));
        Assert.Equal(["only"], Drain(queue));
        for (var i = 0; i < CompactMessageQueue.InitialCapacity; i++) queue.Enqueue(ActorRefs.Nobody, Message(i));
        queue.EnqueueFirst(Message("front"));
        Assert.Equal(["front", .. Enumerable.Range(0, CompactMessageQueue.InitialCapacity).Cast<object>()], Drain(queue));
    }

    [Fact]
    public async Task Many_senders_and_one_reader_lose_nothing_and_keep_each_senders_order()
    {
        const int senders = 4, each = 20_000;
        var queue = new CompactMessageQueue();
        var last = Enumerable.Repeat(-1, senders).ToArray();
        var received = 0;
        var reader = Task.Run(() =>
        {
            while (received < senders * each)
            {
                if (!queue.TryDequeue(out var envelope)) continue;
                var (sender, sequence) = ((int, int))envelope.Message;
                Assert.Equal(last[sender] + 1, sequence);
                last[sender] = sequence;
                received++;
            }
        });
        await Task.WhenAll(Enumerable.Range(0, senders).Select(s => Task.Run(() =>
        {
            for (var i = 0; i < each; i++) queue.Enqueue(ActorRefs.Nobody, Message((s, i)));
        })));
        await reader.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.All(last, sequence => Assert.Equal(each - 1, sequence));
        Assert.False(queue.HasMessages);
    }

    [Fact]
    public void What_is_left_at_the_end_goes_to_the_dead_letters()
    {
        var queue = new CompactMessageQueue();
        var deadLetters = new CompactMessageQueue();
        queue.Enqueue(ActorRefs.Nobody, Message("a"));
        queue.Enqueue(ActorRefs.Nobody, Message("b"));
        queue.CleanUp(ActorRefs.Nobody, deadLetters);
        Assert.False(queue.HasMessages);
        Assert.Equal(["a", "b"], Drain(deadLetters));
    }

    /// <summary>Stashes everything until "open", then unstashes it all and echoes what it handles.</summary>
    private sealed class Gate : UntypedActor, IWithUnboundedStash
    {
        public IStash Stash { get; set; } = null!;

        protected override void OnReceive(object message)
        {
            if (message is "open")
            {
                Become(Open);
                Stash.UnstashAll();
            }
            else
            {
                Stash.Stash();
            }
        }

        private void Open(object message) => Sender.Tell(message);
    }

    [Fact]
    public void An_actor_on_it_stashes_and_unstashes_in_order_in_a_real_actor_system()
    {
        var gate = Sys.ActorOf(Props.Create(() => new Gate()).WithMailbox(CompactMailbox.Id));
        for (var i = 0; i < 50; i++) gate.Tell(i, TestActor);
        gate.Tell("open", TestActor);
        gate.Tell(50, TestActor);
        for (var i = 0; i <= 50; i++) ExpectMsg(i);
        ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }
}
