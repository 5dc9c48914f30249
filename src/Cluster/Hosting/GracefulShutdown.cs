using Akka.Actor;

namespace Weft.Cluster.Hosting;

/// <summary>
/// Runs the actor system's coordinated shutdown first thing when the host stops (SIGTERM, Ctrl+C,
/// a test disposing its node), before any other service stops, Kestrel included: agents are told to
/// move while they can still hear it, then the shards and singletons are handed over, then the node
/// leaves the cluster and only then does the process exit. A node stopped this way costs the
/// cluster a planned handover, never a failover.
/// </summary>
public sealed class GracefulShutdown(ActorSystem system, ILogger<GracefulShutdown> log) : IHostedLifecycleService
{
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        log.LogInformation("Leaving the cluster: moving agents, handing over shards and singletons");
        await CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ClrExitReason.Instance);
        log.LogInformation("Left the cluster");
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
