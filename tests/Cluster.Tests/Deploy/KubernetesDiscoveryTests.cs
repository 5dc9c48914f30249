using Akka.Actor;
using Microsoft.Extensions.DependencyInjection;
using Weft.Cluster.Hosting;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Deploy;

/// <summary>
/// With <c>Weft:Cluster:Discovery = Kubernetes</c> a node joins no seeds: it serves Akka.Management,
/// runs cluster bootstrap, and looks for its peers through the Kubernetes API with the configured
/// selector. Outside Kubernetes it finds nobody and waits, which is what is checked here; forming a
/// cluster needs a real Kubernetes API.
/// </summary>
public class KubernetesDiscoveryTests
{
    [Fact]
    public async Task A_node_set_for_kubernetes_serves_cluster_bootstrap_and_looks_for_its_pods_instead_of_joining_seeds()
    {
        await using var storage = TestStorage.NewSqlite();
        var management = CoordinatorNode.FreeTcpPort();
        var app = CoordinatorHost.Build(storage.Settings.Concat(new Dictionary<string, string?>
        {
            ["Weft:Api:Listen"] = "http://127.0.0.1:0",
            ["Weft:Control:Listen"] = "http://127.0.0.1:0",
            ["Weft:Relay:Listen"] = "127.0.0.1:0",
            ["Weft:Relay:Stun"] = "127.0.0.1:0",
            ["Weft:Cluster:Port"] = "0",
            ["Weft:Cluster:Seeds:0"] = "127.0.0.1:1", // ignored: discovery replaces the seeds
            ["Weft:Cluster:Discovery"] = "Kubernetes",
            ["Weft:Cluster:Kubernetes:PodLabelSelector"] = "app.kubernetes.io/name=weft,app.kubernetes.io/component=coordinator",
            ["Weft:Cluster:Kubernetes:RequiredContactPoints"] = "3",
            ["Weft:Cluster:Kubernetes:ManagementPort"] = management.ToString(),
            ["Serilog:MinimumLevel:Default"] = "Error",
        }));
        await app.StartAsync();
        try
        {
            var config = app.Services.GetRequiredService<ActorSystem>().Settings.Config;
            Assert.Empty(config.GetStringList("akka.cluster.seed-nodes"));
            Assert.Equal("weft-kubernetes", config.GetString("akka.discovery.method"));
            Assert.Equal("app.kubernetes.io/name=weft,app.kubernetes.io/component=coordinator", config.GetString("akka.discovery.weft-kubernetes.pod-label-selector"));
            Assert.Equal(3, config.GetInt("akka.management.cluster.bootstrap.contact-point-discovery.required-contact-point-nr"));
            Assert.Equal("weft", config.GetString("akka.management.cluster.bootstrap.contact-point-discovery.service-name"));

            // The other pods probe this endpoint to agree on who forms the cluster: it answers as Akka.Management's
            // does (this node's address; no members, since it has not joined any), and only on the management port.
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            var seeds = await Eventually.Until(async () =>
            {
                try
                {
                    using var response = await http.GetAsync($"http://127.0.0.1:{management}/bootstrap/seed-nodes");
                    return response.IsSuccessStatusCode ? await response.Content.ReadAsStringAsync() : null;
                }
                catch (HttpRequestException)
                {
                    return null;
                }
            }, body => body is not null, "Akka.Management answering the bootstrap probe", TimeSpan.FromSeconds(30));
            var answer = Newtonsoft.Json.JsonConvert.DeserializeObject<Akka.Management.Cluster.Bootstrap.ContactPoint.HttpBootstrapJsonProtocol.SeedNodes>(seeds!)!;
            Assert.Equal(Akka.Cluster.Cluster.Get(app.Services.GetRequiredService<ActorSystem>()).SelfAddress, answer.SelfNode);
            Assert.Empty(answer.Nodes);
        }
        finally
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await app.StopAsync(timeout.Token);
            await app.DisposeAsync();
        }
    }
}
