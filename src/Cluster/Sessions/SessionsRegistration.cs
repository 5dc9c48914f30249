using Akka;
using Akka.Actor;
using Akka.Hosting;

namespace Weft.Cluster.Sessions;

public static class SessionsRegistration
{
    /// <summary>How long agents told to move wait before dialling (they add their own jitter).</summary>
    public static readonly TimeSpan MoveAfter = TimeSpan.FromMilliseconds(200);
    /// <summary>How long a shutdown waits for the agents' streams to end before it hands the entities off anyway.</summary>
    public static readonly TimeSpan DrainDeadline = TimeSpan.FromSeconds(4);

    /// <summary>
    /// Starts this node's <see cref="SessionGuardian"/>, and drains it first thing in a coordinated
    /// shutdown (phase before-service-unbind): agents move to the nodes that stay before this node's
    /// shards and singletons are handed off.
    /// </summary>
    public static AkkaConfigurationBuilder WithSessions(this AkkaConfigurationBuilder builder) => builder
        .WithActors((system, registry) =>
        {
            var guardian = system.ActorOf(SessionGuardian.Props(), "sessions");
            registry.Register<SessionGuardian>(guardian);
            CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "drain-agent-sessions", async () =>
            {
                try
                {
                    await guardian.Ask<SessionsDrained>(new DrainSessions(MoveAfter, DrainDeadline), DrainDeadline + TimeSpan.FromSeconds(1));
                }
                catch (AskTimeoutException)
                {
                    // Shutdown goes on; streams still open end with the actor system.
                }
                return Done.Instance;
            });
        });
}
