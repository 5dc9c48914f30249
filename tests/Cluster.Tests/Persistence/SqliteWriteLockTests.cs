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
