using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.ApiKeys;

public static class ApiKeysRegistration
{
    /// <summary>Starts the API-key registry: one entity for the whole cluster, placed by sharding.</summary>
    public static AkkaConfigurationBuilder WithApiKeyRegistry(this AkkaConfigurationBuilder builder, PersistenceSettings persistence) => builder
        .WithShardRegion<ApiKeyRegistryActor>("api-keys",
            _ => ApiKeyRegistryActor.PropsFor(persistence),
            HashCodeMessageExtractor.Create(1, message => message is IApiKeyRegistryMessage ? ApiKeyRegistryActor.EntityId : null!),
            PersistentShards.OnDemand());
}
