using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Configuration;
using Akka.Event;
using Akka.Hosting;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Audit;
using Weft.Cluster.Control;
using Weft.Cluster.Hosting.Remoting;
using Weft.Cluster.Machines;
using Weft.Cluster.Persistence;
using Weft.Cluster.Sessions;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Hosting;

/// <summary>The coordinator's actor system: one readable Akka.Hosting chain.</summary>
public static class CoordinatorActorSystem
{
    public const string CoordinatorRole = "coordinator";

    public static IServiceCollection AddCoordinatorActorSystem(this IServiceCollection services, WeftSettings settings, ClusterSecret secret)
    {
        var tuning = LoadTuning(settings.AkkaConfigFile);
        var numberOfShards = tuning.GetInt("weft.sharding.number-of-shards", 100);
        var machineIdle = tuning.GetTimeSpan("weft.sharding.machine-passivate-idle-after", MachineIndexActor.DefaultPassivateIdleAfter, allowInfinite: false);
        var kubernetes = settings.Cluster.Discovery == ClusterDiscovery.Kubernetes;
        var seeds = kubernetes ? [] : settings.Cluster.Seeds.Where(s => !string.IsNullOrWhiteSpace(s)).Select(ClusterNodeSettings.ToSeedAddress).ToArray();

        services.AddSingleton(new TailnetAffinity(numberOfShards));
        return services.AddAkka(ClusterNodeSettings.ActorSystemName, builder => builder
            .AddHocon(tuning, HoconAddMode.Prepend)
            .WithDiscovery(settings.Cluster)
            .ConfigureLoggers(loggers =>
            {
                loggers.ClearLoggers();
                loggers.AddLoggerFactory();
            })
            // Akka.Remote over Weft's own mutual-TLS transport (Remoting/ClusterTlsTransport): the certificate is
            // derived from the cluster secret, so a node without it cannot join.
            .AddHocon(ClusterTlsTransport.Configuration(settings.Cluster.Hostname, settings.Cluster.Port), HoconAddMode.Prepend)
            .AddSetup(new ClusterTlsSetup(secret))
            .WithClustering(new ClusterOptions { SeedNodes = seeds, Roles = [CoordinatorRole] })
            // The libraries' checks behind /healthz/live and /healthz/ready (Api/HealthEndpoint).
            .WithActorSystemLivenessCheck(tags: [Api.HealthEndpoint.LiveTag])
            .WithAkkaClusterReadinessCheck(tags: [Api.HealthEndpoint.ReadyTag])
            .AddHocon(WeftSerialization.Config, HoconAddMode.Prepend)
            .AddHocon(CompactMailbox.Configuration, HoconAddMode.Prepend)
            .WithWeftPersistence(settings.Storage)
            .WithTailnets(settings.Persistence, numberOfShards)
            .WithMachineIndex(settings.Persistence, numberOfShards, machineIdle)
            .WithAuditLog(settings.Persistence, numberOfShards)
            .WithApiKeyRegistry(settings.Persistence)
            .WithClusterKey(settings.Persistence, secret)
            .WithSessions()
            .WithActors((system, _, resolver) => system.ActorOf(
                Relays.RelayAccessRevoker.PropsFor(resolver.GetService<Relays.EmbeddedRelay>(), resolver.GetService<Relays.RelayTicketIssuer>()),
                Relays.RelayAccessRevoker.Name))
            .AddStartup((system, _) =>
            {
                // The replicator starts with the node, not with the first read: until it runs, this node
                // misses the others' writes, and their writes to every node wait for it in vain.
                Akka.DistributedData.DistributedData.Get(system);
                ReportAbnormalShutdown(system);
                system.ActorOf(QuarantineGuard.Props(), "quarantine-guard");
                // With no seeds (and no discovery) this node is the whole cluster: it joins itself.
                if (seeds.Length == 0 && !kubernetes)
                {
                    var cluster = Akka.Cluster.Cluster.Get(system);
                    cluster.Join(cluster.SelfAddress);
                }
            }));
    }

    /// <summary>
    /// When Akka stops the node for a reason other than a requested stop (downed by the cluster, a
    /// peer refused for another cluster secret), says why in one error line and makes the process exit
    /// with the reason's code, so that a supervisor sees a failure and starts the node again.
    /// </summary>
    private static void ReportAbnormalShutdown(ActorSystem system)
    {
        var shutdown = CoordinatedShutdown.Get(system);
        shutdown.AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "report-abnormal-shutdown", () =>
        {
            if (shutdown.ShutdownReason is { ExitCode: not 0 } reason)
            {
                system.Log.Error("This node stops (exit code {0}): {1}", reason.ExitCode, reason);
                // Also straight to stderr: Akka's logging is asynchronous and the process may be gone first.
                Console.Error.WriteLine($"error: this node stops (exit code {reason.ExitCode}): {reason}");
                Environment.ExitCode = reason.ExitCode;
            }
            return Task.FromResult(Akka.Done.Instance);
        });
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
