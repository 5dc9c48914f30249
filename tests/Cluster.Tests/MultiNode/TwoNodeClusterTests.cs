using System.Net;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.MultiNode;

/// <summary>Two coordinator processes on loopback, one PostgreSQL: one cluster, and either node serves any tailnet.</summary>
public class TwoNodeClusterTests
{
    [SkippableFact]
    public async Task A_tailnet_created_through_one_node_is_read_and_changed_through_the_other()
    {
        await using var cluster = await TestCluster.StartAsync(2);
        var (a, b) = (cluster.Api(0), cluster.Api(1));

        var members = await WaitForMembers(a, 2);
        Assert.Equal(cluster.Nodes.Select(n => n.AkkaPort).Order(), members.Select(m => new Uri(m.Address).Port).Order());

        // Several tailnets, so that sharding places entities on both nodes.
        var created = new List<TailnetResource>();
        for (var i = 0; i < 6; i++) created.Add(await a.CreateTailnet($"tenant-{i}"));

        foreach (var tailnet in created)
        {
            Assert.Equal(tailnet, await b.GetTailnet(tailnet.Id));
            var changed = await (await b.PatchJson($"/api/v1/tailnets/{tailnet.Id}", new UpdateTailnetSettingsRequest(NodeKeyExpiryDays: 42)))
                .ReadAs<TailnetResource>(HttpStatusCode.OK);
            Assert.Equal(42, changed.Settings.NodeKeyExpiryDays);
            Assert.Equal(changed, await a.GetTailnet(tailnet.Name));
        }

        await b.PostJson($"/api/v1/tailnets/{created[0].Id}/rename", new RenameTailnetRequest("renamed-on-b"));
        Assert.Equal("renamed-on-b", (await a.GetTailnet(created[0].Id)).Name);
        Assert.Equal(
            (await a.ListTailnets()).Tailnets.Select(t => t.Name).Order(),
            (await b.ListTailnets()).Tailnets.Select(t => t.Name).Order());
    }

    private static async Task<IReadOnlyList<ClusterMemberResource>> WaitForMembers(HttpClient node, int count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var health = await (await node.GetAsync("/healthz")).ReadAs<HealthReport>(HttpStatusCode.OK);
            var up = health.Members.Where(m => m.Status == "up" && m.Reachable).ToList();
            if (up.Count == count) return up;
            if (DateTime.UtcNow > deadline) Assert.Fail($"cluster has {up.Count} up members, expected {count}");
            await Task.Delay(250);
        }
    }
}
