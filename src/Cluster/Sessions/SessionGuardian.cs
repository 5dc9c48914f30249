using Akka.Actor;
using Akka.Event;
using Weft.Cluster.Messaging;
using Weft.Cluster.Devices;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;

namespace Weft.Cluster.Sessions;

// The SessionGuardian's protocol (local only).

/// <summary>
/// Starts a session for a new stream; replies with its <see cref="IActorRef"/>, or <see cref="SessionRefused"/>
/// while draining or when the stream has already ended.
/// </summary>
/// <param name="RemoteAddress">The client's IP address, as the connection saw it (recorded with a device that registers).</param>
/// <param name="StreamEnded">
/// Cancelled when the stream ends, including when it stops waiting for this answer: under a storm the
/// guardian can come to a start after its stream has given up, and must not leave a session behind.
/// </param>
public sealed record StartSession(MachineKey Machine, AgentStreamQueue Outbound, SessionServices Services, System.Net.IPAddress? RemoteAddress = null,
    CancellationToken StreamEnded = default);

public sealed record SessionRefused(string Reason);

/// <summary>
/// Tells every agent on this node to reconnect elsewhere (after about <paramref name="After"/>,
/// jittered by the agents), refuses new streams from now on, and replies <see cref="SessionsDrained"/>
/// once every session has ended or <paramref name="Deadline"/> passed.
/// </summary>
public sealed record DrainSessions(TimeSpan After, TimeSpan Deadline);

public sealed record SessionsDrained(int Moved, int Remaining);

/// <summary>Asks how many agent sessions this node holds (from any node: the console's cluster view).</summary>
[WireName("sessions.count")]
public sealed record CountSessions : IClusterMessage
{
    public static readonly CountSessions Instance = new();
}

[WireName("sessions.counted")]
public sealed record SessionCount(int Sessions, bool Draining) : IClusterMessage;

/// <summary>
/// The parent of every agent session on this node. A session that fails is stopped, not restarted:
/// its stream ends with it and the agent reconnects and resumes, which is simpler and safer than a
/// session that forgot its device. At shutdown it drains the node: agents are told to move first,
/// before sharding hands this node's entities off, so they land on nodes that stay.
/// </summary>
public sealed class SessionGuardian : ReceiveActor, IWithTimers
{
    private readonly ILoggingAdapter _log = Context.GetLogger();
    /// <summary>Each session, with the machine key (hex) of its stream.</summary>
    private readonly Dictionary<IActorRef, string> _sessions = new();
    /// <summary>Each machine key's sessions here, oldest first.</summary>
    private readonly Dictionary<string, List<IActorRef>> _streamsOf = new();
    private IActorRef? _drainRequester;
    private int _moved;

    public SessionGuardian()
    {
        Receive<StartSession>(start =>
        {
            if (_drainRequester is not null || Draining)
            {
                Sender.Tell(new SessionRefused("this coordinator is shutting down"));
                return;
            }
            if (start.StreamEnded.IsCancellationRequested)
            {
                Sender.Tell(new SessionRefused("the stream ended before its session started"));
                return;
            }
            var machine = start.Machine.Key.ToHex();
            if (!_streamsOf.TryGetValue(machine, out var streams)) _streamsOf[machine] = streams = new List<IActorRef>(1);
            // An agent holds one stream; a reconnect may find its last one not yet timed out. More than a few
            // is a copied key or a client opening streams it never uses, each holding a session and its queue.
            while (streams.Count >= Math.Max(1, start.Services.StreamsPerMachine))
            {
                streams[0].Tell(new SessionEnded(ControlErrorCodes.Unavailable, "this machine key opened a newer stream to this coordinator; this one ends"));
                streams.RemoveAt(0);
            }
            var session = Context.ActorOf(SessionActor.PropsFor(start.Machine, start.Outbound, start.Services, start.RemoteAddress, start.StreamEnded));
            Context.Watch(session);
            _sessions[session] = machine;
            streams.Add(session);
            Sender.Tell(session);
        });
        Receive<Terminated>(terminated =>
        {
            if (_sessions.Remove(terminated.ActorRef, out var machine) && _streamsOf.TryGetValue(machine, out var streams)
                && streams.Remove(terminated.ActorRef) && streams.Count == 0)
                _streamsOf.Remove(machine);
            if (_sessions.Count == 0) FinishDrain();
        });
        Receive<DrainSessions>(drain =>
        {
            Draining = true;
            _drainRequester = Sender;
            _moved = _sessions.Count;
            _log.Info("Draining {0} agent session(s): they reconnect to other coordinators", _sessions.Count);
            foreach (var session in _sessions.Keys) session.Tell(new MoveAgent("this coordinator is shutting down", drain.After));
            if (_sessions.Count == 0) FinishDrain();
            else Timers.StartSingleTimer("drain-deadline", DrainDeadline.Instance, drain.Deadline);
        });
        Receive<DrainDeadline>(_ => FinishDrain());
        Receive<CountSessions>(_ => Sender.Tell(new SessionCount(_sessions.Count, Draining)));
    }

    private bool Draining { get; set; }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props() => Akka.Actor.Props.Create(() => new SessionGuardian());

    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(_ => Directive.Stop);

    private void FinishDrain()
    {
        if (_drainRequester is not { } requester) return;
        _drainRequester = null;
        Timers.Cancel("drain-deadline");
        requester.Tell(new SessionsDrained(_moved - _sessions.Count, _sessions.Count));
    }

    private sealed class DrainDeadline
    {
        public static readonly DrainDeadline Instance = new();
    }
}
