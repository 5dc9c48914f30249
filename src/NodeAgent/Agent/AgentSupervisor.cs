using Akka.Actor;
using Akka.Event;
using Weft.NodeAgent.Control;

namespace Weft.NodeAgent.Agent;

/// <summary>An agent's two services, as its <see cref="AgentSupervisor"/> started them.</summary>
public sealed record AgentActors(IActorRef Control, IActorRef? DataPlane)
{
    /// <summary>Starts an agent's actor tree in <paramref name="system"/>.</summary>
    public static AgentActors Start(ActorSystem system, ControlClientOptions control, DataPlaneOptions? dataPlane, string name = "agent") =>
        system.ActorOf(AgentSupervisor.PropsFor(control, dataPlane), name)
            .Ask<AgentActors>(AgentSupervisor.GetActors.Instance, TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();
}

/// <summary>
/// The root of an agent's actors: the <see cref="ControlClient"/> and, when the agent runs tunnels,
/// the <see cref="DataPlane"/> (which supervises the TunnelSupervisor and its PeerTunnels). Both must
/// exist as long as the agent runs, so whatever either fails with, it is restarted, and each
/// re-learns what it needs from the source of truth rather than from memory: the ControlClient from
/// the state file and the netmap cache (and it registers its watchers again), the DataPlane from the
/// ControlClient and the engine, the TunnelSupervisor from the engine's peer table. The engine and
/// the TUN live outside the actors, so a restart never drops a session.
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
        var client = Context.ActorOf(ControlClient.PropsFor(control), "control");
        var plane = dataPlane is null ? null : Context.ActorOf(DataPlane.PropsFor(dataPlane, client), "dataplane");
        var actors = new AgentActors(client, plane);
        Receive<GetActors>(_ => Sender.Tell(actors));
    }

    /// <param name="dataPlane">Null runs the control client alone (<c>--no-tunnels</c>, simulated agents).</param>
    public static Props PropsFor(ControlClientOptions control, DataPlaneOptions? dataPlane) =>
        Props.Create(() => new AgentSupervisor(control, dataPlane));

    // Bounded, so that a service that cannot start (its state unreadable) stops instead of spinning.
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(10, TimeSpan.FromMinutes(1), error =>
    {
        _log.Error(error, "An agent service failed and restarts; it re-learns its state from the state file, the cache and the engine");
        return Directive.Restart;
    });
}
