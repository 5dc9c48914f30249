using System.Net;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Persistence;

/// <summary>Persist, stop the whole node, start a new one on the same store, and read everything back — on SQLite and PostgreSQL.</summary>
public class PersistenceRoundTripTests
{
    [SkippableTheory]
    [InlineData(StorageProvider.Sqlite, 0)]
    [InlineData(StorageProvider.Sqlite, 2)]
    [InlineData(StorageProvider.Postgres, 0)]
    [InlineData(StorageProvider.Postgres, 2)]
    public async Task Everything_acknowledged_comes_back_exactly_after_a_restart(StorageProvider provider, int snapshotEvery)
    {
        await using var storage = await TestStorage.NewAsync(provider);
        KeyValuePair<string, string?>[] snapshots = [new("Weft:Persistence:SnapshotEveryEvents", snapshotEvery.ToString())];

        string before;
        List<TailnetResource> details;
        await using (var node = await TestCoordinator.StartAsync(storage, snapshots))
        {
            var acme = await node.Http.CreateTailnet("acme");
            var globex = await node.Http.CreateTailnet("globex", expiryDays: 30, dnsSuffix: "globex.example.net");
            var doomed = await node.Http.CreateTailnet("doomed");
            for (var days = 1; days <= 5; days++)
                await node.Http.PatchJson($"/api/v1/tailnets/{acme.Id}", new UpdateTailnetSettingsRequest(days, $"v{days}.acme.example"));
            await node.Http.PostJson($"/api/v1/tailnets/{globex.Id}/rename", new RenameTailnetRequest("globex-corp"));
            Assert.Equal(HttpStatusCode.NoContent, (await node.Http.DeleteAsync($"/api/v1/tailnets/{doomed.Id}")).StatusCode);

            before = await node.Http.GetStringAsync("/api/v1/tailnets");
            details = [await node.Http.GetTailnet(acme.Id), await node.Http.GetTailnet(globex.Id)];
        }

        await using (var restarted = await TestCoordinator.StartAsync(storage, snapshots))
        {
            Assert.Equal(before, await restarted.Http.GetStringAsync("/api/v1/tailnets"));
            foreach (var tailnet in details)
                Assert.Equal(tailnet, await restarted.Http.GetTailnet(tailnet.Id));
            Assert.Equal(new TailnetSettingsResource(5, "v5.acme.example", 300), details[0].Settings);
            Assert.Equal("globex-corp", details[1].Name);

            // The deleted tailnet's name is free again, and writes continue after recovery.
            await restarted.Http.CreateTailnet("doomed");
            Assert.Equal(3, (await restarted.Http.ListTailnets()).Tailnets.Count);
        }
    }
}

/// <summary>Routes are stored with the tailnet: after a restart the approvals and every netmap that shows them come back.</summary>
public class RouteRecoveryTests
{
    [SkippableTheory]
    [InlineData(StorageProvider.Sqlite)]
    [InlineData(StorageProvider.Postgres)]
    public async Task Advertised_and_approved_routes_and_the_netmaps_built_on_them_survive_a_restart(StorageProvider provider)
    {
        await using var storage = await TestStorage.NewAsync(provider);
        await using var agents = new AgentSystem();
        string tailnet, routerId, aliceId, routesBefore, aliceMapBefore;
        await using (var node = await TestCoordinator.StartAsync(storage))
        {
            tailnet = (await node.Http.CreateTailnet("routed")).Id;
            await node.Http.DefineTags(tailnet, "tag:router", "tag:client");
            var router = TestAgent.Start(agents, [node.Control], "router", (await node.Http.CreateAuthKey(tailnet, tags: ["tag:router"])).Key,
                tune: o => o with { AdvertisedRoutes = ["198.18.40.0/24", "0.0.0.0/0", "::/0"] });
            var alice = TestAgent.Start(agents, node.Control, "alice", (await node.Http.CreateAuthKey(tailnet, tags: ["tag:client"])).Key);
            await router.WaitForState(Weft.NodeAgent.Control.ControlState.Running);
            await alice.WaitForState(Weft.NodeAgent.Control.ControlState.Running);
            (routerId, aliceId) = (router.DeviceId!, alice.DeviceId!);
            await Eventually.Until(async () => await (await node.Http.GetAsync($"/api/v1/tailnets/{tailnet}/devices/{routerId}/routes")).ReadAs<DeviceRoutesResource>(HttpStatusCode.OK),
                r => r.Advertised.Count == 3, "the advertisement");
            await (await node.Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/{routerId}/routes", new { routes = new[] { "198.18.40.0/24", "0.0.0.0/0", "::/0" } }))
                .ReadAs<DeviceRoutesResource>(HttpStatusCode.OK);
            await alice.WaitForNetMap(v => v.Peers.Values.Any(p => p.ExitNode && p.Routes.Contains("198.18.40.0/24")), "alice sees the router's routes");
            await router.Stop();
            await alice.Stop();
            routesBefore = await node.Http.GetStringAsync($"/api/v1/tailnets/{tailnet}/devices/{routerId}/routes");
            aliceMapBefore = await node.Http.GetStringAsync($"/api/v1/tailnets/{tailnet}/devices/{aliceId}/netmap");
        }

        await using (var restarted = await TestCoordinator.StartAsync(storage))
        {
            Assert.Equal(routesBefore, await restarted.Http.GetStringAsync($"/api/v1/tailnets/{tailnet}/devices/{routerId}/routes"));
            var aliceMap = await restarted.Http.GetStringAsync($"/api/v1/tailnets/{tailnet}/devices/{aliceId}/netmap");
            Assert.Contains("\"198.18.40.0/24\"", aliceMap);
            Assert.Contains("\"exitNode\": true", aliceMap.Replace("\"exitNode\":true", "\"exitNode\": true"));
            // Soft state and versions aside, alice's netmap is the one the first node built. The router's
            // endpoints are soft and its agent is gone, so the new node marks them unknown.
            Assert.Equal(Normalize(aliceMapBefore), Normalize(aliceMap));
            Assert.Contains("endpointsUnknown", aliceMap);
            Assert.True((await restarted.Http.GetDevice(tailnet, routerId)).EndpointsUnknown, "the admin API says the router's endpoints are not known");
        }

        // Without what changes with time and sessions (presence, last seen, the map's version).
        static string Normalize(string netmap)
        {
            var root = System.Text.Json.Nodes.JsonNode.Parse(netmap)!;
            Strip(root);
            return root.ToJsonString();

            static void Strip(System.Text.Json.Nodes.JsonNode? node)
            {
                if (node is System.Text.Json.Nodes.JsonObject obj)
                {
                    foreach (var name in new[] { "online", "lastSeen", "version", "endpoints", "homeRelay", "discoKey", "endpointsUnknown", "endpointsVersion" }) obj.Remove(name);
                    foreach (var (_, child) in obj) Strip(child);
                }
                else if (node is System.Text.Json.Nodes.JsonArray array)
                    foreach (var child in array) Strip(child);
            }
        }
    }

    [Fact]
    public async Task Events_an_entity_wrote_through_a_node_it_had_been_on_before_all_come_back()
    {
        await using var storage = TestStorage.NewSqlite();
        string tailnet;
        await using (var node = await TestCoordinator.StartAsync(storage))
        {
            tailnet = (await node.Http.CreateTailnet("returning")).Id;
            for (var days = 1; days <= 3; days++)
                (await node.Http.PatchJson($"/api/v1/tailnets/{tailnet}", new UpdateTailnetSettingsRequest(days))).EnsureSuccessStatusCode();
        }

        // As if the entity had moved to another node for its second change and come back for its third:
        // the journal stamps each row with the writing node's journal id.
        var database = storage.SqliteDatabase;
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        await using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={database}"))
        {
            await connection.OpenAsync();
            await using var rewrite = connection.CreateCommand();
            rewrite.CommandText = "UPDATE journal SET writer_uuid = 'another-node' WHERE persistence_id = $id AND sequence_number = " +
                "(SELECT MAX(sequence_number) - 1 FROM journal WHERE persistence_id = $id)";
            rewrite.Parameters.AddWithValue("$id", Weft.Cluster.Tailnets.TailnetActor.PersistenceIdOf(tailnet));
            Assert.Equal(1, await rewrite.ExecuteNonQueryAsync());
        }
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();

        await using (var node = await TestCoordinator.StartAsync(storage))
        {
            // The default replay filter took the third change for a stray write of an old writer and dropped it.
            Assert.Equal(3, (await node.Http.GetTailnet(tailnet)).Settings.NodeKeyExpiryDays);
        }
    }
}
