using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster;
using Akka.Hosting;
using Akka.Management.Cluster.Bootstrap;
using Akka.Management.Cluster.Bootstrap.ContactPoint;
using Akka.Management.Dsl;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Newtonsoft.Json;

namespace Weft.Cluster.Hosting;

/// <summary>
/// Forming the cluster on Kubernetes with Akka.Management's cluster bootstrap: every pod finds the
/// others through the Kubernetes API (<see cref="KubernetesPodDiscovery"/>, the pods' label selector), probes
/// each one's <c>/bootstrap/seed-nodes</c>, and joins the cluster they report; when none is in a
/// cluster yet and enough of them see each other, the one with the lowest address forms it.
/// <para>
/// The bootstrap endpoint is served here, by Kestrel on the management port, rather than by
/// Akka.Management's own HTTP server: that server (Akka.Http.Shim 1.5.73) needs Ceen.Httpd 0.9.9,
/// and the 0.9.10 that the package registry serves no longer has the method it calls, so it fails
/// to start. The route answers exactly as Akka.Management's does (the same JSON type), so the
/// bootstrap's own probes read it unchanged.
/// </para>
/// </summary>
public static class KubernetesBootstrap
{
    public const string Route = "/bootstrap/seed-nodes";
    /// <summary>As Akka.Management's contact-point.max-seed-nodes-to-expose (its default).</summary>
    private const int MaxSeedNodesToExpose = 5;

    /// <summary>Bootstrap settings and pod discovery; the bootstrap starts once the node runs (see <see cref="Start"/>).</summary>
    public static AkkaConfigurationBuilder WithKubernetesBootstrap(this AkkaConfigurationBuilder builder, ClusterNodeSettings cluster)
    {
        var kubernetes = cluster.Kubernetes;
        static string Quoted(string? text) => System.Text.Json.JsonSerializer.Serialize(text ?? "");
        return builder
            .WithClusterBootstrap(serviceName: kubernetes.ServiceName, portName: "management", requiredContactPoints: kubernetes.RequiredContactPoints, autoStart: false)
            .AddHocon($$"""
                akka.discovery.method = {{KubernetesPodDiscovery.Method}}
                akka.discovery.{{KubernetesPodDiscovery.Method}} {
                  class = {{Quoted(typeof(KubernetesPodDiscovery).AssemblyQualifiedName)}}
                  api-url = {{Quoted(kubernetes.ApiUrl)}}
                  pod-namespace = {{Quoted(kubernetes.PodNamespace)}}
                  pod-label-selector = {{Quoted(kubernetes.PodLabelSelector)}}
                  token-path = {{Quoted(kubernetes.TokenPath)}}
                  ca-path = {{Quoted(kubernetes.CaPath)}}
                  namespace-path = {{Quoted(kubernetes.NamespacePath)}}
                }
                """, HoconAddMode.Append)
            .AddStartup((system, _) => Start(system, cluster));
    }

    /// <summary>Tells the bootstrap where this pod's own endpoint is, then starts probing.</summary>
    private static void Start(ActorSystem system, ClusterNodeSettings cluster)
    {
        var bootstrap = ClusterBootstrap.Get(system);
        var self = new Uri($"http://{cluster.Hostname}:{cluster.Kubernetes.ManagementPort}/");
        ((IManagementRouteProvider)bootstrap).Routes(ManagementRouteProviderSettings.Create(self, readOnly: true));
        _ = bootstrap.Start();
    }

    /// <summary>GET /bootstrap/seed-nodes: this node's address and the members it can vouch for (none while it is leaving).</summary>
    public static void MapBootstrapRoute(this WebApplication app) => app.MapGet(Route, (ActorSystem system) =>
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var state = cluster.State;
        var leaving = cluster.SelfMember.Status is MemberStatus.Leaving or MemberStatus.Exiting or MemberStatus.Down or MemberStatus.Removed;
        var members = leaving
            ? ImmutableList<HttpBootstrapJsonProtocol.ClusterMember>.Empty
            : state.Members
                .Where(m => !state.Unreachable.Contains(m) && m.Status is MemberStatus.Joining or MemberStatus.Up or MemberStatus.WeaklyUp)
                .Take(MaxSeedNodesToExpose)
                .Select(m => new HttpBootstrapJsonProtocol.ClusterMember(m.UniqueAddress.Address, m.UniqueAddress.Uid, m.Status, m.Roles))
                .ToImmutableList();
        var seeds = new HttpBootstrapJsonProtocol.SeedNodes(cluster.SelfMember.UniqueAddress.Address, members);
        return Results.Text(JsonConvert.SerializeObject(seeds), "application/json");
    });
}
