using Akka.Actor;
using Akka.Cluster;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Hosting;
using Weft.Cluster.Persistence;
using Weft.Cluster.Replication;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Api;

/// <summary>
/// Weft's own readiness conditions, beside the libraries' checks (cluster membership, journal and
/// snapshot store): a node serves only when it is on the majority side, fully started, holds the
/// replicated keys and names, and is not shutting down.
/// </summary>
public static class CoordinatorHealthChecks
{
    public static IHealthChecksBuilder AddCoordinatorHealthChecks(this IServiceCollection services) => services
        .AddHealthChecks()
        .AddCheck<MajorityCheck>("majority", tags: [HealthEndpoint.ReadyTag])
        .AddCheck<StartedCheck>("started", tags: [HealthEndpoint.ReadyTag])
        .AddCheck<ReplicasCheck>("replicas", tags: [HealthEndpoint.ReadyTag])
        .AddCheck<StorageCheck>("storage", tags: [HealthEndpoint.ReadyTag])
        .AddCheck<ShutdownCheck>("shutdown", tags: [HealthEndpoint.ReadyTag]);

    /// <summary>
    /// The split-brain resolver's keep-majority rule as this node sees it: more reachable members
    /// than unreachable ones (a tie goes to the side with the lowest address). A node on the minority
    /// side of a partition is about to be downed, and must not take requests meanwhile.
    /// </summary>
    private sealed class MajorityCheck(ActorSystem system) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            var state = Akka.Cluster.Cluster.Get(system).State;
            var counted = state.Members.Where(m => m.Status is MemberStatus.Up or MemberStatus.Leaving).ToList();
            var unreachable = counted.Count(m => state.Unreachable.Contains(m));
            var reachable = counted.Count - unreachable;
            var lowest = counted.OrderBy(m => m.Address, Member.AddressOrdering).FirstOrDefault();
            var majority = reachable > unreachable || (reachable == unreachable && lowest is not null && !state.Unreachable.Contains(lowest));
            var detail = $"{reachable} of {counted.Count} members reachable";
            return Task.FromResult(majority ? HealthCheckResult.Healthy(detail) : HealthCheckResult.Unhealthy(detail));
        }
    }

    private sealed class StartedCheck(CoordinatorReadiness readiness) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
            Task.FromResult(readiness.Endpoints.IsCompletedSuccessfully
                ? HealthCheckResult.Healthy("listening, keys established")
                : HealthCheckResult.Unhealthy("starting"));
    }

    private sealed class ReplicasCheck(Replica<ApiKeyRegistryState> keys, Replica<TailnetDirectoryState> names) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
            await keys.ReadAsync(cancellationToken) is not null && await names.ReadAsync(cancellationToken) is not null
                ? HealthCheckResult.Healthy("API keys and tailnet names replicated here")
                : HealthCheckResult.Unhealthy("waiting for the API keys and tailnet names");
    }

    /// <summary>One cheap query against the store (<see cref="StorageProbe"/>, at most once a second).</summary>
    private sealed class StorageCheck(StorageProbe storage) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            var status = await storage.CheckAsync(cancellationToken);
            return status.Reachable ? HealthCheckResult.Healthy(status.Detail) : HealthCheckResult.Unhealthy(status.Detail);
        }
    }

    private sealed class ShutdownCheck(ActorSystem system) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
            Task.FromResult(CoordinatedShutdown.Get(system).ShutdownReason is { } reason
                ? HealthCheckResult.Unhealthy($"shutting down ({reason.GetType().Name})")
                : HealthCheckResult.Healthy("running"));
    }
}
