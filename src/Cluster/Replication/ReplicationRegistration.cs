using Akka.Actor;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Replication;

public static class ReplicationRegistration
{
    /// <summary>This node's replicas of the single-writer entities that every admin request reads: API keys and tailnet names.</summary>
    public static IServiceCollection AddReplicas(this IServiceCollection services) => services
        .AddSingleton(s => new Replica<ApiKeyRegistryState>(s.GetRequiredService<ActorSystem>(), ApiKeyRegistryActor.ReplicaKey))
        .AddSingleton(s => new Replica<TailnetDirectoryState>(s.GetRequiredService<ActorSystem>(), TailnetDirectoryActor.ReplicaKey));
}
