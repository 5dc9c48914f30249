using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Weft.Cluster.Devices;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tailnets;

public static class TailnetsRegistration
{
    /// <summary>
    /// Entities that own timers (tailnet housekeeping, the directory's retries of interrupted
    /// creations and removals) must always be running, not only when a message happens to wake them.
    /// Remembering them makes sharding start them again after a rebalance or the loss of their node,
    /// and turns idle passivation off for them. Their number is the number of tenants, so keeping
    /// them resident costs little. The memory of who is remembered is kept in the journal
    /// (event-sourced store): distributed data is not durable here.
    /// </summary>
    private static ShardOptions Remembered() => new()
    {
        RememberEntities = true,
        RememberEntitiesStore = RememberEntitiesStore.Eventsourced,
    };

    /// <summary>Starts the tailnet shard region (one entity per tailnet), the directory entity, and the device region.</summary>
    public static AkkaConfigurationBuilder WithTailnets(this AkkaConfigurationBuilder builder, PersistenceSettings persistence, int numberOfShards) => builder
        .WithShardRegion<TailnetActor>("tailnet",
            (_, _, resolver) => tailnetId => TailnetActor.PropsFor(tailnetId, persistence, resolver.GetService<TimeProvider>(),
                resolver.GetService<Hosting.WeftSettings>()?.Control),
            HashCodeMessageExtractor.Create(numberOfShards, message => (Telemetry.Traced.Unwrap(message) as ITailnetMessage)?.TailnetId!),
            Remembered())
        .WithShardRegion<TailnetDirectoryActor>("tailnet-directory",
            (_, registry, _) => _ => TailnetDirectoryActor.PropsFor(registry.Get<TailnetActor>(), persistence),
            HashCodeMessageExtractor.Create(1, message => message is ITailnetDirectoryMessage ? TailnetDirectoryActor.EntityId : null!),
            Remembered())
        // Devices are not remembered: they passivate when idle, and the session re-attaches them.
        .WithShardRegion<DeviceActor>("device",
            (_, _, resolver) => deviceId => DeviceActor.PropsFor(deviceId, persistence, resolver.GetService<TimeProvider>(),
                resolver.GetService<Hosting.WeftSettings>()?.Control.PublicUrls ?? []),
            HashCodeMessageExtractor.Create(numberOfShards, message => (message as IDeviceMessage)?.DeviceId!),
            new ShardOptions());
}
