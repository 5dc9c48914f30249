using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tailnets;

public static class TailnetsRegistration
{
    /// <summary>Starts the tailnet shard region (one entity per tailnet) and the directory entity.</summary>
    public static AkkaConfigurationBuilder WithTailnets(this AkkaConfigurationBuilder builder, PersistenceSettings persistence, int numberOfShards) => builder
        .WithShardRegion<TailnetActor>("tailnet",
            tailnetId => TailnetActor.PropsFor(tailnetId, persistence),
            HashCodeMessageExtractor.Create(numberOfShards, message => (message as ITailnetMessage)?.TailnetId!),
            new ShardOptions())
        .WithShardRegion<TailnetDirectoryActor>("tailnet-directory",
            (_, registry, _) => _ => TailnetDirectoryActor.PropsFor(registry.Get<TailnetActor>(), persistence),
            HashCodeMessageExtractor.Create(1, message => message is ITailnetDirectoryMessage ? TailnetDirectoryActor.EntityId : null!),
            new ShardOptions());
}
