using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Configuration;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Control;
using Weft.Cluster.Machines;
using Weft.Cluster.Persistence;
using Weft.Cluster.Sessions;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Hosting;

/// <summary>The coordinator's actor system: one readable Akka.Hosting chain.</summary>
public static class CoordinatorActorSystem
{
    public const string CoordinatorRole = "coordinator";

    public static IServiceCollection AddCoordinatorActorSystem(this IServiceCollection services, WeftSettings settings)
    {
        var tuning = LoadTuning(settings.AkkaConfigFile);
        var numberOfShards = tuning.GetInt("weft.sharding.number-of-shards", 100);
        var kubernetes = settings.Cluster.Discovery == ClusterDiscovery.Kubernetes;
        var seeds = kubernetes ? [] : settings.Cluster.Seeds.Where(s => !string.IsNullOrWhiteSpace(s)).Select(ClusterNodeSettings.ToSeedAddress).ToArray();

        return services.AddAkka(ClusterNodeSettings.ActorSystemName, builder => builder
            .AddHocon(tuning, HoconAddMode.Prepend)
            .WithDiscovery(settings.Cluster)
            .ConfigureLoggers(loggers =>
            {
                loggers.ClearLoggers();
                loggers.AddLoggerFactory();
            })
            .WithRemoting(settings.Cluster.Hostname, settings.Cluster.Port)
            .WithClustering(new ClusterOptions { SeedNodes = seeds, Roles = [CoordinatorRole] })
            .AddHocon(WeftSerialization.Config, HoconAddMode.Prepend)
            .WithWeftPersistence(settings.Storage)
            .WithTailnets(settings.Persistence, numberOfShards)
            .WithMachineIndex(settings.Persistence, numberOfShards)
            .WithApiKeyRegistry(settings.Persistence)
            .WithClusterKey(settings.Persistence)
            .WithSessions()
            .AddStartup((system, _) =>
            {
                // The replicator starts with the node, not with the first read: until it runs, this node
                // misses the others' writes, and their writes to every node wait for it in vain.
                Akka.DistributedData.DistributedData.Get(system);
                // With no seeds (and no discovery) this node is the whole cluster: it joins itself.
                if (seeds.Length == 0 && !kubernetes)
                {
                    var cluster = Akka.Cluster.Cluster.Get(system);
                    cluster.Join(cluster.SelfAddress);
                }
            }));
    }

    /// <summary>With Kubernetes discovery: cluster bootstrap (see <see cref="KubernetesBootstrap"/>).</summary>
    private static AkkaConfigurationBuilder WithDiscovery(this AkkaConfigurationBuilder builder, ClusterNodeSettings cluster) =>
        cluster.Discovery == ClusterDiscovery.Kubernetes ? builder.WithKubernetesBootstrap(cluster) : builder;

    /// <summary>Reads akka.hocon, the one place where Akka is tuned.</summary>
    public static Config LoadTuning(string? path)
    {
        path ??= Path.Combine(AppContext.BaseDirectory, "akka.hocon");
        if (!File.Exists(path)) throw new FileNotFoundException($"Akka configuration not found at {path}", path);
        return ConfigurationFactory.ParseString(File.ReadAllText(path));
    }
}
