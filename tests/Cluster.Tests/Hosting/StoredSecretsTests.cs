using System.Security.Cryptography;
using System.Text;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Weft.Cluster.Control;
using Weft.Cluster.Hosting;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Keys;

namespace Weft.Cluster.Tests.Hosting;

/// <summary>
/// What a coordinator on SQLite leaves on disk: a data folder and database only their owner may read,
/// and a coordinator key that is nowhere in clear — including a key an earlier version stored in clear.
/// </summary>
public class StoredSecretsTests
{
    private static async Task<string> CoordinatorKeyOf(TestCoordinator node) =>
        (await node.Services.GetRequiredService<CoordinatorIdentity>().Key).ToBase64();

    private static byte[] EverythingOnDisk(string folder)
    {
        SqliteConnection.ClearAllPools();
        return Directory.GetFiles(folder, "weft.db*").SelectMany(File.ReadAllBytes).ToArray();
    }

    [SkippableFact]
    public async Task The_database_is_the_owners_alone_and_holds_the_coordinator_key_only_sealed()
    {
        Skip.If(OperatingSystem.IsWindows(), "Unix file modes");
        await using var storage = TestStorage.NewSqlite();
        string key;
        await using (var node = await TestCoordinator.StartAsync(storage)) key = await CoordinatorKeyOf(node);

        var folder = storage.DataDirectory;
        const UnixFileMode owner = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        Assert.Equal(owner | UnixFileMode.UserExecute, File.GetUnixFileMode(folder));
        foreach (var file in Directory.GetFiles(folder)) Assert.Equal(owner, File.GetUnixFileMode(file));
        var disk = EverythingOnDisk(folder);
        Assert.True(disk.Length > 0);
        Assert.Equal(-1, disk.AsSpan().IndexOf(Encoding.ASCII.GetBytes(key)));
        Assert.Equal(-1, disk.AsSpan().IndexOf(Convert.FromBase64String(key)));

        // Started again, the node opens its sealed key: agents see the same coordinator.
        await using (var again = await TestCoordinator.StartAsync(storage)) Assert.Equal(key, await CoordinatorKeyOf(again));

        // A node given another secret cannot open it, and says why.
        File.WriteAllText(Path.Combine(folder, ClusterSecret.GeneratedFileName), Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)));
        var refused = await Assert.ThrowsAnyAsync<Exception>(() => TestCoordinator.StartAsync(storage));
        Assert.Contains("cannot be opened with this node's cluster secret", refused.ToString());
    }

    [SkippableFact]
    public async Task A_key_an_earlier_version_stored_in_clear_is_kept_sealed_and_its_clear_copy_deleted()
    {
        Skip.If(OperatingSystem.IsWindows(), "Unix file modes");
        await using var storage = TestStorage.NewSqlite();
        await using (await TestCoordinator.StartAsync(storage)) { }
        var folder = storage.DataDirectory;

        // Replace the stored key by a clear one, as versions before sealing wrote it.
        using var legacyKey = Curve25519PrivateKey.Generate();
        var legacy = legacyKey.ToBase64();
        await using (var connection = new SqliteConnection($"Data Source={StorageSettings.SqliteDatabaseIn(folder)}"))
        {
            await connection.OpenAsync();
            await RewriteTheFirstEventInClear(connection, legacy);
        }

        await using (var node = await TestCoordinator.StartAsync(storage))
        {
            Assert.Equal(legacy, await CoordinatorKeyOf(node)); // agents that know the old key keep trusting this coordinator
            await Eventually.Until(() => Task.FromResult(ClusterKeyRows(folder)), rows => !rows.Contains("key.coordinator-created"),
                "the clear copy deleted from the journal");
            Assert.Equal(["key.coordinator-sealed"], ClusterKeyRows(folder));
        }
        Assert.DoesNotContain(legacy, string.Join("\n", JournalAndSnapshotText(folder)));
        await using (var again = await TestCoordinator.StartAsync(storage)) Assert.Equal(legacy, await CoordinatorKeyOf(again));
    }

    [SkippableFact]
    public async Task A_deletion_of_the_clear_copy_that_was_cut_off_is_done_by_the_next_start()
    {
        Skip.If(OperatingSystem.IsWindows(), "Unix file modes");
        await using var storage = TestStorage.NewSqlite();
        string sealedKey;
        await using (var first = await TestCoordinator.StartAsync(storage)) sealedKey = await CoordinatorKeyOf(first);
        var folder = storage.DataDirectory;

        // The journal as a node leaves it that stopped right after sealing a clear key, before its snapshot
        // and deletion: the clear event of an earlier version, then the sealed one.
        using var legacyKey = Curve25519PrivateKey.Generate();
        var legacy = legacyKey.ToBase64();
        await using (var connection = new SqliteConnection($"Data Source={StorageSettings.SqliteDatabaseIn(folder)}"))
        {
            await connection.OpenAsync();
            var columns = new List<string>();
            await using (var describe = connection.CreateCommand())
            {
                describe.CommandText = "SELECT name FROM pragma_table_info('journal') WHERE pk = 0";
                await using var reader = await describe.ExecuteReaderAsync();
                while (await reader.ReadAsync()) columns.Add(reader.GetString(0));
            }
            await using var copy = connection.CreateCommand();
            copy.CommandText = $"INSERT INTO journal ({string.Join(", ", columns)}) SELECT {string.Join(", ", columns.Select(c => c == "sequence_number" ? "2" : c))} " +
                "FROM journal WHERE persistence_id = 'cluster-key' AND sequence_number = 1";
            Assert.Equal(1, await copy.ExecuteNonQueryAsync());
            await RewriteTheFirstEventInClear(connection, legacy);
        }
        Assert.Equal(["key.coordinator-created", "key.coordinator-sealed"], ClusterKeyRows(folder));

        await using (var node = await TestCoordinator.StartAsync(storage))
        {
            Assert.Equal(sealedKey, await CoordinatorKeyOf(node)); // the sealed event is the newer
            await Eventually.Until(() => Task.FromResult(ClusterKeyRows(folder)), rows => rows.SequenceEqual(["key.coordinator-sealed"]),
                "the clear copy deleted by the next start");
        }
        Assert.DoesNotContain(legacy, string.Join("\n", JournalAndSnapshotText(folder)));
        await using (var again = await TestCoordinator.StartAsync(storage)) Assert.Equal(sealedKey, await CoordinatorKeyOf(again));
        Assert.Equal(["key.coordinator-sealed"], ClusterKeyRows(folder));
    }

    [Fact]
    public void Printing_a_stored_coordinator_key_record_shows_no_key()
    {
        using var key = Curve25519PrivateKey.Generate();
        Assert.DoesNotContain(key.ToBase64(), new CoordinatorKeyCreated(key.ToBase64()).ToString());
        Assert.DoesNotContain(key.ToBase64(), new ClusterKeyState("c2VhbGVk", key.ToBase64()).ToString());
    }

    /// <summary>The cluster key's first event becomes <paramref name="clearKey"/> stored in clear, as versions before sealing wrote it.</summary>
    private static async Task RewriteTheFirstEventInClear(SqliteConnection connection, string clearKey)
    {
        await using var rewrite = connection.CreateCommand();
        rewrite.CommandText = "UPDATE journal SET message = $message, manifest = 'key.coordinator-created' WHERE persistence_id = 'cluster-key' AND sequence_number = 1";
        rewrite.Parameters.AddWithValue("$message", StoredRecordCatalog.Codecs.Encode(new CoordinatorKeyCreated(clearKey)));
        Assert.Equal(1, await rewrite.ExecuteNonQueryAsync());
    }

    /// <summary>Every stored event and snapshot of the cluster key, as text.</summary>
    private static List<string> JournalAndSnapshotText(string folder) => Query(folder,
        "SELECT message FROM journal WHERE persistence_id = 'cluster-key' UNION ALL SELECT snapshot FROM snapshot WHERE persistence_id = 'cluster-key'",
        row => Encoding.Latin1.GetString((byte[])row[0]));

    private static List<string> ClusterKeyRows(string folder) => Query(folder,
        "SELECT manifest FROM journal WHERE persistence_id = 'cluster-key' ORDER BY sequence_number", row => row.GetString(0));

    private static List<T> Query<T>(string folder, string sql, Func<SqliteDataReader, T> read)
    {
        using var connection = new SqliteConnection($"Data Source={StorageSettings.SqliteDatabaseIn(folder)};Mode=ReadOnly");
        connection.Open();
        using var query = connection.CreateCommand();
        query.CommandText = sql;
        using var reader = query.ExecuteReader();
        var rows = new List<T>();
        while (reader.Read()) rows.Add(read(reader));
        return rows;
    }
}
