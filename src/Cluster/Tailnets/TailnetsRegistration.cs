using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Weft.Cluster.Devices;
using Weft.Cluster.Hosting;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tailnets;

public static class TailnetsRegistration
{
    /// <summary>
    /// Starts the tailnet shard region (one entity per tailnet), the directory entity, and the device
    /// region. Tailnets and devices are placed by <see cref="Hosting.CoLocatingAllocationStrategy"/>, so a
    /// tailnet and the devices that <see cref="TailnetAffinity"/> put in its shard run on one node.
    /// </summary>
    public static AkkaConfigurationBuilder WithTailnets(this AkkaConfigurationBuilder builder, PersistenceSettings persistence, int numberOfShards) => builder
        .WithCoLocatedShardRegion<TailnetActor>("tailnet",
            resolver => tailnetId => TailnetActor.PropsFor(tailnetId, persistence, resolver.GetService<TimeProvider>(),
                resolver.GetService<Hosting.WeftSettings>()?.Control),
            HashCodeMessageExtractor.Create(numberOfShards, message => (Telemetry.Traced.Unwrap(message) as ITailnetMessage)?.TailnetId!),
            PersistentShards.Remembered())
        .WithShardRegion<TailnetDirectoryActor>("tailnet-directory",
            (_, registry, _) => _ => TailnetDirectoryActor.PropsFor(registry.Get<TailnetActor>(), persistence),
            HashCodeMessageExtractor.Create(1, message => message is ITailnetDirectoryMessage ? TailnetDirectoryActor.EntityId : null!),
            PersistentShards.Remembered())
        // Devices are not remembered: they passivate when idle, and the session re-attaches them.
        .WithCoLocatedShardRegion<DeviceActor>("device",
            resolver => deviceId => DeviceActor.PropsFor(deviceId, persistence, resolver.GetService<TimeProvider>(),
                resolver.GetService<Hosting.WeftSettings>()?.Control.PublicUrls ?? []),
            HashCodeMessageExtractor.Create(numberOfShards, message => (message as IDeviceMessage)?.DeviceId!),
            PersistentShards.OnDemand());
}
