using Akka.Actor;
using Akka.Event;
using Weft.NodeAgent.Control;

namespace Weft.NodeAgent.Agent;

/// <summary>An agent's two services, and their <see cref="AgentSupervisor"/>, as it started them.</summary>
public sealed record AgentActors(IActorRef Supervisor, IActorRef Control, IActorRef? DataPlane)
{
    /// <summary>Starts an agent's actor tree in <paramref name="system"/>.</summary>
    public static AgentActors Start(ActorSystem system, ControlClientOptions control, DataPlaneOptions? dataPlane, string name = "agent") =>
        system.ActorOf(AgentSupervisor.PropsFor(control, dataPlane), name)
            .Ask<AgentActors>(AgentSupervisor.GetActors.Instance, TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();
}

/// <summary>A service of the agent stopped for good (it failed more often than its restart limit allows).</summary>
public sealed class AgentServiceStoppedException(string message) : Exception(message);

/// <summary>
/// The root of an agent's actors: the <see cref="ControlClient"/> and, when the agent runs tunnels,
/// the <see cref="DataPlane"/> (which supervises the TunnelSupervisor and its PeerTunnels). Both must
/// exist as long as the agent runs, so whatever either fails with, it is restarted, and each
/// re-learns what it needs from the source of truth rather than from memory: the ControlClient from
/// the state file and the netmap cache (and it registers its watchers again), the DataPlane from the
/// ControlClient and the engine, the TunnelSupervisor from the engine's peer table. The engine and
/// the TUN live outside the actors, so a restart never drops a session. A service that fails more
/// than 10 times in a minute is stopped, and then the whole agent stops (the daemon exits with an
/// error for its service manager to start it again) rather than run on without it.
/// </summary>
public sealed class AgentSupervisor : ReceiveActor
{
    /// <summary>Replies <see cref="AgentActors"/>.</summary>
    public sealed class GetActors
    {
        public static readonly GetActors Instance = new();
    }

    private readonly ILoggingAdapter _log = Context.GetLogger();

    public AgentSupervisor(ControlClientOptions control, DataPlaneOptions? dataPlane)
    {
        var client = Context.Watch(Context.ActorOf(ControlClient.PropsFor(control), "control"));
        var plane = dataPlane is null ? null : Context.Watch(Context.ActorOf(DataPlane.PropsFor(dataPlane, client), "dataplane"));
        var actors = new AgentActors(Self, client, plane);
        Receive<GetActors>(_ => Sender.Tell(actors));
        // A service used up its restarts. An agent without it would linger: connected to nothing, or
        // with its tunnels and filter frozen on an old netmap. The whole agent stops instead; the
        // daemon exits with an error, and its service manager (systemd's Restart=always) starts it
        // afresh, from the state file and the prefs.
        Receive<Terminated>(terminated =>
        {
            _log.Error("The agent's {0} stopped after failing more than {1} times in a minute; the agent stops", terminated.ActorRef.Path.Name, MaxRestartsPerMinute);
            Context.Stop(Self);
        });
    }

    /// <param name="dataPlane">Null runs the control client alone (<c>--no-tunnels</c>, simulated agents).</param>
    public static Props PropsFor(ControlClientOptions control, DataPlaneOptions? dataPlane) =>
        Props.Create(() => new AgentSupervisor(control, dataPlane));

    // Bounded, so that a service that cannot start (its state unreadable) stops instead of spinning.
    private const int MaxRestartsPerMinute = 10;

    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(MaxRestartsPerMinute, TimeSpan.FromMinutes(1), error =>
    {
        _log.Error(error, "An agent service failed and restarts; it re-learns its state from the state file, the cache and the engine");
        return Directive.Restart;
    });
}
