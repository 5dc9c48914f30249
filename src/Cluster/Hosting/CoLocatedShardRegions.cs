using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Hosting;

public static class CoLocatedShardRegions
{
    /// <summary>
    /// A shard region placed by <see cref="CoLocatingAllocationStrategy"/>, registered under
    /// <typeparamref name="TKey"/>: Akka.Hosting's <c>WithShardRegion</c> with another allocation strategy
    /// (it takes none). Its settings come from <paramref name="options"/> as Akka.Hosting makes them.
    /// </summary>
    public static AkkaConfigurationBuilder WithCoLocatedShardRegion<TKey>(this AkkaConfigurationBuilder builder, string typeName,
        Func<Akka.DependencyInjection.IDependencyResolver, Func<string, Akka.Actor.Props>> entityProps, IMessageExtractor extractor, ShardOptions options) =>
        builder.WithActors(async (system, registry, resolver) =>
        {
            // The extension first: it puts sharding's defaults under the system's configuration.
            var clusterSharding = ClusterSharding.Get(system);
            var sharding = Akka.Configuration.ConfigurationFactory.ParseString(options.ToString())
                .WithFallback(system.Settings.Config.GetConfig("akka.cluster.sharding"));
            var settings = ClusterShardingSettings.Create(sharding, system.Settings.Config.GetConfig(sharding.GetString("coordinator-singleton")));
            var region = await clusterSharding.StartAsync(typeName, entityProps(resolver), settings, extractor,
                new CoLocatingAllocationStrategy(system), options.HandOffStopMessage ?? throw new ArgumentException($"a region of persistent entities stops them with StopEntity (see {nameof(PersistentShards)})", nameof(options)));
            registry.Register<TKey>(region);
        });
}
