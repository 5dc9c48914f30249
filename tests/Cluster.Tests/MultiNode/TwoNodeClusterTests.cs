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

    [SkippableFact]
    public async Task A_tailnet_whose_devices_outweigh_a_remote_frame_is_listed_whole_through_the_node_that_does_not_hold_it()
    {
        // Frames between nodes of 48 KiB (4 MiB as shipped): 80 devices weigh more than one frame, as
        // some thousands do with the shipped limit. The listing crosses in pages of half a frame.
        using var tuning = TestTuning.With("akka.remote.weft-tls.maximum-frame-size = 48 KiB");
        await using var cluster = await TestCluster.StartAsync(2, new Dictionary<string, string> { ["Weft__AkkaConfigFile"] = tuning.Path });
        await WaitForMembers(cluster.Api(0), 2);
        var tailnet = await cluster.Api(0).CreateTailnet("heavy");
        var placement = await (await cluster.Api(0).GetAsync($"/api/v1/tailnets/{tailnet.Id}/placement")).ReadAs<TailnetPlacementResource>(HttpStatusCode.OK);
        var holder = cluster.Nodes.ToList().FindIndex(n => n.Address == placement.Node);
        Assert.True(holder >= 0, $"the tailnet is on {placement.Node}, not one of the lab's nodes");
        var (holding, other) = (cluster.Api(holder), cluster.Api(1 - holder));
        var key = await holding.CreateAuthKey(tailnet.Id, reusable: true);

        for (var i = 0; i < 80; i++)
        {
            await using var stream = await RawControlStream.OpenAsync(cluster.Nodes[i % 2].Control);
            using var machine = Weft.Contracts.Keys.Curve25519PrivateKey.Generate();
            using var node = Weft.Contracts.Keys.Curve25519PrivateKey.Generate();
            await stream.Handshake(machine);
            var registered = await stream.Register(machine, node, authKey: key.Key, hostname: $"a-device-with-a-rather-long-host-name-{i:D3}");
            Assert.Equal(Weft.Contracts.Control.RegisterResult.Types.Status.Authorized, registered.Status);
        }

        var here = await holding.ListDevices(tailnet.Id);
        var there = await other.ListDevices(tailnet.Id);
        Assert.Equal(80, here.Devices.Count);
        Assert.Equal(here.Devices.Select(d => d.Id).Order(StringComparer.Ordinal), there.Devices.Select(d => d.Id));
        Assert.True(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(there).Length > 48 * 1024, "the devices fit in one frame: the test proves nothing");
        Assert.Equal(there.Devices[41].Id, (await other.GetDevice(tailnet.Id, there.Devices[41].Name)).Id);
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
