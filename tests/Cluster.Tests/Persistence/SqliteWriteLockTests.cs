using Microsoft.Data.Sqlite;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Persistence;

/// <summary>
/// SQLite has one write lock. A recovery only reads, so it must not wait for that lock: in a join storm
/// or after a restart, entities recover while the journal writes.
/// </summary>
public class SqliteWriteLockTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    public async Task An_entity_that_starts_on_demand_recovers_while_another_connection_holds_the_write_lock(int snapshotEvery)
    {
        await using var storage = TestStorage.NewSqlite();
        KeyValuePair<string, string?>[] settings = [new("Weft:Persistence:SnapshotEveryEvents", snapshotEvery.ToString())];
        string tailnet, auditPath;
        AuditLogResource before;
        await using (var node = await TestCoordinator.StartAsync(storage, settings))
        {
            tailnet = (await node.Http.CreateTailnet("locked-out")).Id;
            auditPath = $"/api/v1/tailnets/{tailnet}/audit?since=1h";
            for (var days = 1; days <= 5; days++)
                (await node.Http.PatchJson($"/api/v1/tailnets/{tailnet}", new UpdateTailnetSettingsRequest(days))).EnsureSuccessStatusCode();
            before = await Eventually.Until(() => node.Http.GetAuditLog(auditPath), log => log.Entries.Count == 6, "the creation and five changes in the audit log");
        }

        await using var restarted = await TestCoordinator.StartAsync(storage, settings);
        var database = storage.SqliteDatabase;
        await using var writer = new SqliteConnection($"Data Source={database};Pooling=False");
        await writer.OpenAsync();
        await Execute(writer, "BEGIN IMMEDIATE;");
        try
        {
            AssertWriteLockHeld(database);

            // The tailnet's audit log is an entity that starts on demand: this request starts it, and it
            // recovers (snapshot, highest sequence number, replay) while the lock is held. A read that
            // asked for the write lock would wait for it until its command timed out, and the request
            // would fail.
            var recovered = await restarted.Http.GetAuditLog(auditPath);
            Assert.Equal(before.Entries, recovered.Entries);

            AssertWriteLockHeld(database);
        }
        finally
        {
            await Execute(writer, "ROLLBACK;");
        }

        // The lock is free again: the entities write, and the writes are there.
        (await restarted.Http.PatchJson($"/api/v1/tailnets/{tailnet}", new UpdateTailnetSettingsRequest(6))).EnsureSuccessStatusCode();
        Assert.Equal(6, (await restarted.Http.GetTailnet(tailnet)).Settings.NodeKeyExpiryDays);
        await Eventually.Until(() => restarted.Http.GetAuditLog(auditPath), log => log.Entries.Count == 7, "the change made after the lock was released in the audit log");
    }

    /// <summary>
    /// A busy database is not a dead one. Every journal call passes a circuit breaker; with Akka's
    /// defaults a write that waited 10 s counted as failed, ten such failures opened the breaker, and
    /// for 30 s every write and recovery on the node then failed at once. After a node is lost, the
    /// survivors' writes queue for longer than that: at 50,000 nodes the breaker opened on both, and
    /// 77,603 changes never reached their peers. Here twelve tailnets write while the write lock is held
    /// for longer than Akka's old limit and shorter than the request's own deadline (ClusterAsk, 20 s).
    /// On Akka's defaults the requests fail with 503.
    /// </summary>
    [Fact]
    public async Task Writes_held_up_longer_than_ten_seconds_by_a_busy_database_are_acknowledged_and_the_next_writes_go_through()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        var tailnets = new List<string>();
        for (var i = 0; i < 12; i++) tailnets.Add((await node.Http.CreateTailnet($"busy-{i}")).Id);

        var database = storage.SqliteDatabase;
        await using var writer = new SqliteConnection($"Data Source={database};Pooling=False");
        await writer.OpenAsync();
        await Execute(writer, "BEGIN IMMEDIATE;");
        Task<HttpResponseMessage>[] changes;
        try
        {
            AssertWriteLockHeld(database);
            changes = tailnets.Select(id => node.Http.PatchJson($"/api/v1/tailnets/{id}", new UpdateTailnetSettingsRequest(7))).ToArray();
            await Task.Delay(TimeSpan.FromSeconds(13));
            Assert.All(changes, change => Assert.False(change.IsCompleted, "a write was answered while the database's write lock was held"));
        }
        finally
        {
            await Execute(writer, "ROLLBACK;");
        }

        foreach (var change in changes)
        {
            using var response = await change;
            Assert.True(response.IsSuccessStatusCode, $"a write the database held up was refused: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }
        foreach (var id in tailnets)
        {
            Assert.Equal(7, (await node.Http.GetTailnet(id)).Settings.NodeKeyExpiryDays);
            // The breaker did not open: the next writes are acknowledged too.
            (await node.Http.PatchJson($"/api/v1/tailnets/{id}", new UpdateTailnetSettingsRequest(8))).EnsureSuccessStatusCode();
            Assert.Equal(8, (await node.Http.GetTailnet(id)).Settings.NodeKeyExpiryDays);
        }
    }

    /// <summary>A second writer is refused (SQLITE_BUSY) while the test's transaction holds the lock.</summary>
    private static void AssertWriteLockHeld(string database)
    {
        using var other = new SqliteConnection($"Data Source={database};Pooling=False;Default Timeout=1");
        other.Open();
        var refused = Assert.Throws<SqliteException>(() =>
        {
            using var begin = other.CreateCommand();
            begin.CommandText = "BEGIN IMMEDIATE;";
            begin.ExecuteNonQuery();
        });
        Assert.Equal(5, refused.SqliteErrorCode); // SQLITE_BUSY
    }

    private static async Task Execute(SqliteConnection connection, string sql)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync();
    }
}
