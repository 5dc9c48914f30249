using Akka.Actor;
using Akka.Event;
using Akka.Remote;

namespace Weft.Cluster.Hosting;

/// <summary>
/// Stops this node when a member of its cluster has quarantined it. A member quarantines a node
/// when it removes it from the cluster (the node was downed while it could not hear: a long pause,
/// a partition) or when messages to it were lost for good; either way that member will never speak
/// to this incarnation again, and Akka's only way back is a new actor system. The split-brain
/// resolver usually reaches the same end a few seconds later (the node finds the others
/// unreachable and downs itself as a minority); this does not wait for it, and does not depend on it.
/// The process exits with the downing exit code, so that its supervisor starts a fresh incarnation,
/// which joins as a new member.
/// </summary>
public sealed class QuarantineGuard : ReceiveActor
{
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private bool _downed;

    public QuarantineGuard()
    {
        Receive<ThisActorSystemQuarantinedEvent>(OnQuarantined);
    }

    public static Props Props() => Akka.Actor.Props.Create(() => new QuarantineGuard());

    protected override void PreStart() => Context.System.EventStream.Subscribe(Self, typeof(ThisActorSystemQuarantinedEvent));

    protected override void PostStop() => Context.System.EventStream.Unsubscribe(Self);

    private void OnQuarantined(ThisActorSystemQuarantinedEvent quarantined)
    {
        var shutdown = CoordinatedShutdown.Get(Context.System);
        if (_downed || shutdown.ShutdownReason is not null) return; // already stopping, for whatever reason
        var cluster = Akka.Cluster.Cluster.Get(Context.System);
        if (!cluster.State.Members.Any(m => m.Address == quarantined.RemoteAddress))
        {
            _log.Warning("Quarantined by {0}, which is not a member of this node's cluster; ignored", quarantined.RemoteAddress);
            return;
        }
        var why = $"member {quarantined.RemoteAddress} has quarantined this node (it removed this node from the cluster, or lost messages to it for good); this node downs itself";
        _log.Error(why);
        // Also straight to stderr: Akka's logging is asynchronous and the process may be gone first.
        Console.Error.WriteLine($"error: {why}");
        // Downing itself, rather than running the coordinated shutdown directly: a node that knows it
        // is down skips the shard hand-off and the leaving that the others would never answer, and
        // run-coordinated-shutdown-when-down stops it.
        cluster.Down(cluster.SelfAddress);
        _downed = true;
    }
}
