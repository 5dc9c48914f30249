using Akka.Actor;
using Akka.Configuration;

namespace Weft.NodeAgent.Agent;

/// <summary>The actor system agents run in: the daemon's, a standalone tunnel's, and the many of a test or a load generator.</summary>
public static class AgentActorSystem
{
    /// <param name="logLevel">Akka's own log level (DEBUG, INFO, WARNING, ERROR); start-up chatter stays off standard output.</param>
    public static ActorSystem Create(string name, string logLevel = "WARNING") =>
        Started(ActorSystem.Create(name, ConfigurationFactory.ParseString($"akka.loglevel = {logLevel}\nakka.stdout-loglevel = WARNING")));

    /// <summary>
    /// An actor system whose logs (the actors' own and Akka's) go to Serilog's <c>Log.Logger</c>, the
    /// agent's log pipeline, at <paramref name="logLevel"/> and above.
    /// </summary>
    public static ActorSystem CreateLoggingToSerilog(string name, string logLevel)
    {
        var config = ConfigurationFactory.ParseString($$"""
            akka.loglevel = {{logLevel}}
            akka.stdout-loglevel = OFF
            akka.loggers = ["Akka.Logger.Serilog.SerilogLogger, Akka.Logger.Serilog"]
            akka.log-dead-letters = off
            """);
        return Started(ActorSystem.Create(name, config));
    }

    private static ActorSystem Started(ActorSystem system)
    {
        // Akka's timer wheel starts on its first use, and every caller blocks until it runs. Started
        // here, while the thread pool is idle, it is not started by hundreds of actors' PreStarts at
        // once, each holding a pool thread that the start itself needs: 100 ControlClients starting
        // together stalled for 15-30 s until the pool grew.
        system.Scheduler.Advanced.ScheduleOnce(TimeSpan.Zero, () => { });
        return system;
    }
}
