using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Persistence;

/// <summary>
/// An entity's journal stays a couple of snapshot intervals long, however many changes it makes, and what
/// was deleted is never missed: a restart (even one whose newest snapshot is gone) comes back exactly. A
/// deleted tailnet's data leaves the store altogether. On SQLite and PostgreSQL, read straight from their tables.
/// </summary>
public class JournalRetentionTests
{
    private const int SnapshotEvery = 5;
    private const int Changes = 40;

    private static KeyValuePair<string, string?>[] Settings(bool keepAllEvents) =>
    [
        new("Weft:Persistence:SnapshotEveryEvents", SnapshotEvery.ToString()),
        new("Weft:Persistence:KeepAllEvents", keepAllEvents ? "true" : "false"),
    ];

    private sealed record Stored(List<long> Events, List<long> Snapshots)
    {
        public override string ToString() => $"events [{string.Join(",", Events)}], snapshots [{string.Join(",", Snapshots)}]";
    }

    [SkippableTheory]
    [InlineData(StorageProvider.Sqlite)]
    [InlineData(StorageProvider.Postgres)]
    public async Task Events_older_than_the_snapshot_before_the_newest_are_deleted_and_a_restart_still_recovers_everything(StorageProvider provider)
    {
        await using var storage = await TestStorage.NewAsync(provider);
        string tailnet;
        TailnetResource before;
        await using (var node = await TestCoordinator.StartAsync(storage, Settings(keepAllEvents: false)))
        {
            tailnet = (await node.Http.CreateTailnet("busy")).Id;
            await MakeChanges(node, tailnet, first: 1);
            before = await node.Http.GetTailnet(tailnet);

            // Two snapshots stay (the newest and the one before), and the journal keeps the events from the older
            // one on; the journal keeps the last deleted row, which is the older snapshot's own event.
            var stored = await Eventually.Until(() => ReadTailnet(storage, tailnet), Retained, "events up to the older of two snapshots deleted");
            Assert.True(stored.Events.Count <= 2 * SnapshotEvery + 1, $"{stored.Events.Count} events stayed after {Changes} changes: {stored}");

            // The tailnet's audit log took a snapshot as often, and keeps every entry all the same.
            var audit = await Read(storage, "audit-" + tailnet);
            Assert.NotEmpty(audit.Snapshots);
            Assert.Equal(Enumerable.Range(1, Changes + 1).Select(n => (long)n), audit.Events);
        }

        await using (var restarted = await TestCoordinator.StartAsync(storage, Settings(keepAllEvents: false)))
        {
            Assert.Equal(before, await restarted.Http.GetTailnet(tailnet));
            // Writes go on from the sequence numbers the journal kept.
            await MakeChanges(restarted, tailnet, first: Changes + 1);
            before = await restarted.Http.GetTailnet(tailnet);
            await Eventually.Until(() => ReadTailnet(storage, tailnet), Retained, "retention after a restart");
        }

        // A newest snapshot that cannot be used (an operator deleted it): the older one and the events kept after it suffice.
        var newest = (await ReadTailnet(storage, tailnet)).Snapshots.Max();
        await Execute(storage, $"DELETE FROM snapshot WHERE persistence_id = '{TailnetActor.PersistenceIdOf(tailnet)}' AND sequence_number = {newest}");
        await using (var fromTheOlder = await TestCoordinator.StartAsync(storage, Settings(keepAllEvents: false)))
            Assert.Equal(before, await fromTheOlder.Http.GetTailnet(tailnet));
    }

    [SkippableFact]
    public async Task With_KeepAllEvents_every_event_stays_a_deleted_tailnets_too_until_the_setting_is_off()
    {
        await using var storage = TestStorage.NewSqlite();
        string tailnet;
        await using (var node = await TestCoordinator.StartAsync(storage, Settings(keepAllEvents: true)))
        {
            tailnet = (await node.Http.CreateTailnet("kept")).Id;
            await MakeChanges(node, tailnet, first: 1);

            // Snapshots older than the one before the newest still go; the events all stay.
            var stored = await Eventually.Until(() => ReadTailnet(storage, tailnet),
            s => s.Snapshots.Count == 2 && s.Events.Max() - s.Snapshots.Max() < SnapshotEvery, "every snapshot due stored, two kept");
            Assert.Equal(Enumerable.Range(1, (int)stored.Events.Max()).Select(n => (long)n), stored.Events);
            Assert.True(stored.Events.Count > Changes, stored.ToString());
            Assert.Equal(System.Net.HttpStatusCode.NoContent, (await node.Http.DeleteAsync($"/api/v1/tailnets/{tailnet}")).StatusCode);
        }
        // Deleted, and woken again by a restart and a request: its history is all there.
        await using (var restarted = await TestCoordinator.StartAsync(storage, Settings(keepAllEvents: true)))
            await (await restarted.Http.GetAsync($"/api/v1/tailnets/{tailnet}/devices")).ReadError(System.Net.HttpStatusCode.NotFound);
        var after = await ReadTailnet(storage, tailnet);
        Assert.Equal(Enumerable.Range(1, Changes + 2).Select(n => (long)n), after.Events);

        // With the setting off, the next request that wakes the deleted tailnet has it erase what it kept.
        await using (var erasing = await TestCoordinator.StartAsync(storage, Settings(keepAllEvents: false)))
        {
            await (await erasing.Http.GetAsync($"/api/v1/tailnets/{tailnet}/devices")).ReadError(System.Net.HttpStatusCode.NotFound);
            var erased = await Eventually.Until(() => ReadTailnet(storage, tailnet), s => s.Snapshots.Count == 1 && s.Events.Count <= 1, "the kept history erased");
            Assert.Equal(Changes + 2, erased.Snapshots[0]);
        }
    }

    [SkippableTheory]
    [InlineData(StorageProvider.Sqlite)]
    [InlineData(StorageProvider.Postgres)]
    public async Task A_deleted_tailnet_leaves_none_of_its_users_devices_or_policy_in_the_store_and_stays_deleted(StorageProvider provider)
    {
        await using var storage = await TestStorage.NewAsync(provider);
        string tailnet;
        string[] markers = ["erasable-user", "erasable-host", "erasable-policy", "198.18.7.77"];
        await using (var node = await TestCoordinator.StartAsync(storage, Settings(keepAllEvents: false)))
        {
            tailnet = (await node.Http.CreateTailnet("erasable")).Id;
            (await node.Http.PostJson($"/api/v1/tailnets/{tailnet}/users", new { name = "erasable-user" })).EnsureSuccessStatusCode();
            using (var policy = new StringContent("// erasable-policy\n{ \"acls\": [{ \"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"] }] }",
                       System.Text.Encoding.UTF8, "application/hujson"))
                (await node.Http.PostAsync($"/api/v1/tailnets/{tailnet}/policy", policy)).EnsureSuccessStatusCode();
            var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
            await using (var agents = new AgentSystem())
            {
                using var agent = TestAgent.Start(agents, node.Control, "erasable-host", key, endpoints: ["198.18.7.77:41641"]);
                await agent.WaitForNetMap(view => view.Self is not null, "the device joined");
                // The endpoints are soft state: the store has them once a snapshot taken after their report is written.
                await Eventually.Until(async () => (await node.Http.GetDevice(tailnet, agent.DeviceId!)).Endpoints, e => e.Contains("198.18.7.77:41641"), "the endpoints reported");
                await MakeChanges(node, tailnet, first: 1); // snapshots, so that the data is in them too
                await Eventually.Until(() => StoredBytes(storage, tailnet), stored => markers.All(stored.Contains), "every marker stored");

                Assert.Equal(System.Net.HttpStatusCode.NoContent, (await node.Http.DeleteAsync($"/api/v1/tailnets/{tailnet}")).StatusCode);
            }

            // One snapshot of the deleted tailnet is left, and at most the journal's last row (marked deleted).
            var left = await Eventually.Until(() => ReadTailnet(storage, tailnet), s => s.Snapshots.Count == 1 && s.Events.Count <= 1, "the deleted tailnet's history deleted");
            Assert.Equal(left.Snapshots[0], left.Events.DefaultIfEmpty(left.Snapshots[0]).Max());
            var remaining = await StoredBytes(storage, tailnet);
            Assert.All(markers, marker => Assert.DoesNotContain(marker, remaining));
            // Its audit log outlives it, as the record of who changed and deleted it.
            Assert.True((await Read(storage, "audit-" + tailnet)).Events.Count > Changes);
            // Its device's machine key journal goes (at most the last row, marked deleted), and its device keeps one snapshot.
            foreach (var entity in new[] { "machine-", "device-" })
            {
                var ids = await Strings(storage, $"SELECT DISTINCT persistence_id FROM journal WHERE persistence_id LIKE '{entity}%'");
                Assert.NotEmpty(ids);
                foreach (var id in ids)
                    await Eventually.Until(() => Read(storage, id), s => s.Events.Count <= 1 && s.Snapshots.Count == (entity == "device-" ? 1 : 0), $"{id}'s history gone");
            }
        }

        await using (var restarted = await TestCoordinator.StartAsync(storage, Settings(keepAllEvents: false)))
        {
            await (await restarted.Http.GetAsync($"/api/v1/tailnets/{tailnet}")).ReadError(System.Net.HttpStatusCode.NotFound);
            await (await restarted.Http.GetAsync($"/api/v1/tailnets/{tailnet}/devices")).ReadError(System.Net.HttpStatusCode.NotFound);
            // Its audit log outlives it: an operator reads who deleted it, by its id.
            var audit = await restarted.Http.GetAuditLog($"/api/v1/tailnets/{tailnet}/audit");
            Assert.Contains(audit.Entries, entry => entry.Action == "DELETE /api/v1/tailnets/{tailnet}" && entry.Status == 204);
            Assert.NotEqual(tailnet, (await restarted.Http.CreateTailnet("erasable")).Id);
        }
    }

    [Theory]
    [InlineData("BEFORE INSERT ON snapshot WHEN NEW.persistence_id")] // its snapshot refused
    [InlineData("BEFORE DELETE ON snapshot WHEN OLD.persistence_id")] // its snapshot stored, the older ones' deletion refused
    public async Task A_deleted_tailnets_erasure_that_the_store_refused_is_tried_again_until_it_is_done(string refusal)
    {
        // A full disk, the store away: before, the deleted tailnet stopped at the next pass with its history (or older
        // snapshots, which hold all of it) stored, and nothing ever started it again to finish.
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [.. Settings(keepAllEvents: false), new("Weft:Control:HousekeepingSeconds", "0.5")]);
        var tailnet = (await node.Http.CreateTailnet("stubborn")).Id;
        await MakeChanges(node, tailnet, first: 1);
        var id = TailnetActor.PersistenceIdOf(tailnet);
        await Sql(storage, $"CREATE TRIGGER refuse_snapshots {refusal} = '{id}' BEGIN SELECT RAISE(ABORT, 'the disk is full'); END");

        Assert.Equal(System.Net.HttpStatusCode.NoContent, (await node.Http.DeleteAsync($"/api/v1/tailnets/{tailnet}")).StatusCode);
        await Task.Delay(TimeSpan.FromSeconds(3)); // several housekeeping passes, each refused
        var refused = await ReadTailnet(storage, tailnet);
        Assert.False(refused.Snapshots.Count == 1 && refused.Events.Count <= 1, $"the history went though the store refused: {refused}");
        await Sql(storage, "DROP TRIGGER refuse_snapshots");

        var erased = await Eventually.Until(() => ReadTailnet(storage, tailnet), s => s.Snapshots.Count == 1 && s.Events.Count <= 1, "the deleted tailnet's history erased once the store took its snapshot");
        Assert.Equal(erased.Snapshots[0], erased.Events.DefaultIfEmpty(erased.Snapshots[0]).Max());
    }

    private static async Task Sql(TestStorage storage, string sql)
    {
        await using (var connection = await Open(storage))
        {
            await using var command = connection.CreateCommand();
            command.CommandText = sql;
            await command.ExecuteNonQueryAsync();
        }
        SqliteConnection.ClearAllPools();
    }

    /// <summary>Everything stored for the tailnet's entity (its events and snapshots), as text.</summary>
    private static async Task<string> StoredBytes(TestStorage storage, string tailnet)
    {
        var id = TailnetActor.PersistenceIdOf(tailnet);
        await using var connection = await Open(storage);
        await using var query = connection.CreateCommand();
        query.CommandText = $"SELECT message FROM journal WHERE persistence_id = '{id}' UNION ALL SELECT snapshot FROM snapshot WHERE persistence_id = '{id}'";
        await using var reader = await query.ExecuteReaderAsync();
        var text = new System.Text.StringBuilder();
        while (await reader.ReadAsync()) text.Append(System.Text.Encoding.Latin1.GetString((byte[])reader[0]));
        return text.ToString();
    }

    /// <summary>Each change is one event: the tailnet's key expiry set to another number of days.</summary>
    private static async Task MakeChanges(TestCoordinator node, string tailnet, int first)
    {
        for (var days = first; days < first + Changes; days++)
            (await node.Http.PatchJson($"/api/v1/tailnets/{tailnet}", new UpdateTailnetSettingsRequest(days))).EnsureSuccessStatusCode();
    }

    /// <summary>Every snapshot due is stored (the newest is less than an interval behind the last event), two are kept, and no event older than the older one's.</summary>
    private static bool Retained(Stored stored) =>
        stored.Snapshots.Count == 2 && stored.Events.Count > 0 && stored.Events.Max() - stored.Snapshots.Max() < SnapshotEvery
        && stored.Events.Min() >= stored.Snapshots.Min();

    private static Task<Stored> ReadTailnet(TestStorage storage, string tailnet) => Read(storage, TailnetActor.PersistenceIdOf(tailnet));

    /// <summary>The sequence numbers of the events and snapshots stored for <paramref name="id"/> (a persistence id).</summary>
    private static async Task<Stored> Read(TestStorage storage, string id)
    {
        return new Stored(
            await Numbers(storage, $"SELECT sequence_number FROM journal WHERE persistence_id = '{id}' ORDER BY sequence_number"),
            await Numbers(storage, $"SELECT sequence_number FROM snapshot WHERE persistence_id = '{id}' ORDER BY sequence_number"));
    }

    private static Task<List<string>> Strings(TestStorage storage, string sql) => Column(storage, sql, reader => reader.GetString(0));

    private static Task<List<long>> Numbers(TestStorage storage, string sql) => Column(storage, sql, reader => reader.GetInt64(0));

    /// <summary>The first column of every row <paramref name="sql"/> answers.</summary>
    private static async Task<List<T>> Column<T>(TestStorage storage, string sql, Func<System.Data.Common.DbDataReader, T> read)
    {
        await using var connection = await Open(storage);
        await using var query = connection.CreateCommand();
        query.CommandText = sql;
        await using var reader = await query.ExecuteReaderAsync();
        var values = new List<T>();
        while (await reader.ReadAsync()) values.Add(read(reader));
        return values;
    }

    private static async Task Execute(TestStorage storage, string sql)
    {
        await using (var connection = await Open(storage))
        {
            await using var command = connection.CreateCommand();
            command.CommandText = sql;
            Assert.Equal(1, await command.ExecuteNonQueryAsync());
        }
        SqliteConnection.ClearAllPools();
    }

    private static async Task<DbConnection> Open(TestStorage storage)
    {
        DbConnection connection = storage is TestStorage.PostgresStorage postgres
            ? new NpgsqlConnection(postgres.ConnectionString)
            : new SqliteConnection($"Data Source={storage.SqliteDatabase};Pooling=False");
        await connection.OpenAsync();
        return connection;
    }
}
