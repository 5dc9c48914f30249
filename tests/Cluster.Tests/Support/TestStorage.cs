using Npgsql;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tests.Support;

/// <summary>Where a test coordinator keeps its journal: a fresh SQLite folder or a fresh PostgreSQL database.</summary>
public abstract class TestStorage : IAsyncDisposable
{
    public abstract StorageProvider Provider { get; }

    public abstract IEnumerable<KeyValuePair<string, string?>> Settings { get; }

    /// <summary>The coordinator's data folder on SQLite (its database, cluster secret and reset requests).</summary>
    public string DataDirectory => Settings.Single(s => s.Key == "Weft:Storage:DataDirectory").Value!;

    /// <summary>The coordinator's SQLite database file, in <see cref="DataDirectory"/>.</summary>
    public string SqliteDatabase => StorageSettings.SqliteDatabaseIn(DataDirectory);

    public static TestStorage NewSqlite() => new SqliteStorage();

    /// <summary>A new, empty database on the test PostgreSQL server (skips when none is configured).</summary>
    public static async Task<TestStorage> NewPostgresAsync() => await PostgresStorage.CreateAsync();

    public static async Task<TestStorage> NewAsync(StorageProvider provider) =>
        provider == StorageProvider.Sqlite ? NewSqlite() : await NewPostgresAsync();

    public abstract ValueTask DisposeAsync();

    private sealed class SqliteStorage : TestStorage
    {
        private readonly string _folder = Path.Combine(Path.GetTempPath(), "weft-test-" + Guid.NewGuid().ToString("N"));

        public override StorageProvider Provider => StorageProvider.Sqlite;

        public override IEnumerable<KeyValuePair<string, string?>> Settings =>
        [
            new("Weft:Storage:Provider", "Sqlite"),
            new("Weft:Storage:DataDirectory", _folder),
        ];

        public override ValueTask DisposeAsync()
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
            return ValueTask.CompletedTask;
        }
    }

    public sealed class PostgresStorage : TestStorage
    {
        private readonly string _database;

        private PostgresStorage(string database, string connectionString)
        {
            _database = database;
            ConnectionString = connectionString;
        }

        public string ConnectionString { get; }

        public override StorageProvider Provider => StorageProvider.Postgres;

        public override IEnumerable<KeyValuePair<string, string?>> Settings =>
        [
            new("Weft:Storage:Provider", "Postgres"),
            new("Weft:Storage:ConnectionString", ConnectionString),
            new("Weft:Cluster:Secret", LabKeys.ClusterSecret),
        ];

        public static async Task<PostgresStorage> CreateAsync()
        {
            var admin = TestPrerequisites.RequirePostgres();
            var database = "weft_test_" + Guid.NewGuid().ToString("N")[..12];
            await using (var connection = new NpgsqlConnection(admin))
            {
                await connection.OpenAsync();
                await using var create = new NpgsqlCommand($"CREATE DATABASE \"{database}\"", connection);
                await create.ExecuteNonQueryAsync();
            }
            var builder = new NpgsqlConnectionStringBuilder(admin) { Database = database };
            return new PostgresStorage(database, builder.ToString());
        }

        public override async ValueTask DisposeAsync()
        {
            NpgsqlConnection.ClearAllPools();
            await using var connection = new NpgsqlConnection(TestPrerequisites.RequirePostgres());
            await connection.OpenAsync();
            await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{_database}\" WITH (FORCE)", connection);
            await drop.ExecuteNonQueryAsync();
        }
    }
}
