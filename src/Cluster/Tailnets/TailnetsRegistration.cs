using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Weft.Cluster.Devices;
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

    /// <summary>
    /// A shard region placed by <see cref="Hosting.CoLocatingAllocationStrategy"/>, registered under
    /// <typeparamref name="TKey"/>: Akka.Hosting's <c>WithShardRegion</c> with another allocation strategy
    /// (it takes none). Its settings come from <paramref name="options"/> as Akka.Hosting makes them.
    /// </summary>
    private static AkkaConfigurationBuilder WithCoLocatedShardRegion<TKey>(this AkkaConfigurationBuilder builder, string typeName,
        Func<Akka.DependencyInjection.IDependencyResolver, Func<string, Akka.Actor.Props>> entityProps, IMessageExtractor extractor, ShardOptions options) =>
        builder.WithActors(async (system, registry, resolver) =>
        {
            // The extension first: it puts sharding's defaults under the system's configuration.
            var clusterSharding = ClusterSharding.Get(system);
            var sharding = Akka.Configuration.ConfigurationFactory.ParseString(options.ToString())
                .WithFallback(system.Settings.Config.GetConfig("akka.cluster.sharding"));
            var settings = ClusterShardingSettings.Create(sharding, system.Settings.Config.GetConfig(sharding.GetString("coordinator-singleton")));
            var region = await clusterSharding.StartAsync(typeName, entityProps(resolver), settings, extractor,
                new Hosting.CoLocatingAllocationStrategy(system), options.HandOffStopMessage ?? throw new ArgumentException("a region of persistent entities stops them with StopEntity (see PersistentShards)", nameof(options)));
            registry.Register<TKey>(region);
        });
}
