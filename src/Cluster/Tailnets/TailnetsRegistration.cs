using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Weft.Cluster.Devices;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tailnets;

public static class TailnetsRegistration
{
    /// <summary>Starts the tailnet shard region (one entity per tailnet), the directory entity, and the device region.</summary>
    public static AkkaConfigurationBuilder WithTailnets(this AkkaConfigurationBuilder builder, PersistenceSettings persistence, int numberOfShards) => builder
        .WithShardRegion<TailnetActor>("tailnet",
            (_, _, resolver) => tailnetId => TailnetActor.PropsFor(tailnetId, persistence, resolver.GetService<TimeProvider>(),
                resolver.GetService<Hosting.WeftSettings>()?.Control),
            HashCodeMessageExtractor.Create(numberOfShards, message => (message as ITailnetMessage)?.TailnetId!),
            new ShardOptions())
        .WithShardRegion<TailnetDirectoryActor>("tailnet-directory",
            (_, registry, _) => _ => TailnetDirectoryActor.PropsFor(registry.Get<TailnetActor>(), persistence),
            HashCodeMessageExtractor.Create(1, message => message is ITailnetDirectoryMessage ? TailnetDirectoryActor.EntityId : null!),
            new ShardOptions())
        .WithShardRegion<DeviceActor>("device",
            (_, _, resolver) => deviceId => DeviceActor.PropsFor(deviceId, persistence, resolver.GetService<TimeProvider>(),
                resolver.GetService<Hosting.WeftSettings>()?.Control.PublicUrls ?? []),
            HashCodeMessageExtractor.Create(numberOfShards, message => (message as IDeviceMessage)?.DeviceId!),
            new ShardOptions());
}
