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
