using Akka.Hosting;
using Akka.Persistence.Sql.Hosting;
using LinqToDB;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Weft.Cluster.Persistence;

/// <summary>Wires Akka.Persistence.Sql to SQLite or PostgreSQL, and binds the stored-record serializer.</summary>
public static class PersistenceSetup
{
    public static AkkaConfigurationBuilder WithWeftPersistence(this AkkaConfigurationBuilder builder, StorageSettings storage)
    {
        var (connectionString, providerName) = Resolve(storage);
        // Readiness (/healthz/ready) includes the journal's and snapshot store's own health. Their SQL
        // connectivity checks (Akka.Persistence.Sql.Hosting 1.5.70, the newest served) are built against
        // an older linq2db than Akka.Persistence.Sql 1.5.73 runs on and fail to load, so the store is
        // checked by Weft's StorageProbe instead (Api/CoordinatorHealthChecks, "storage").
        string[] ready = [Api.HealthEndpoint.ReadyTag];
        builder.WithSqlPersistence(connectionString, providerName, autoInitialize: true,
            journalBuilder: journal => journal.WithHealthCheck(HealthStatus.Unhealthy, name: "journal", tags: ready),
            snapshotBuilder: snapshots => snapshots.WithHealthCheck(HealthStatus.Unhealthy, name: "snapshot-store", tags: ready));
        builder.AddHocon(NoReplayFilter, HoconAddMode.Prepend);
        if (storage.Provider == StorageProvider.Sqlite)
        {
            // SQLite has a single writer; concurrent journal writers would only contend for its lock.
            builder.AddHocon("akka.persistence.journal.sql.parallelism = 1", HoconAddMode.Prepend);
            builder.AddHocon(SqliteReadsTakeNoWriteLock, HoconAddMode.Prepend);
        }
        return builder;
    }

    /// <summary>
    /// Lets SQLite reads run beside the writer. Akka.Persistence.Sql runs every read (a recovery's
    /// snapshot load, highest sequence number and replay) in a transaction of the configured isolation
    /// level, unspecified by default. Microsoft.Data.Sqlite opens such a transaction with
    /// <c>BEGIN IMMEDIATE</c>, which takes the database's one write lock: every recovery then queued
    /// behind the journal's writes, and a reader or writer that found the lock taken slept 150 ms
    /// before trying again (its busy loop). Read-uncommitted is the one level it opens deferred
    /// (<c>BEGIN</c>); without a shared cache it still reads at serializable isolation, from a WAL
    /// snapshot, and it takes no lock a writer waits for.
    /// </summary>
    public const string SqliteReadsTakeNoWriteLock = """
        akka.persistence.journal.sql.read-isolation-level = read-uncommitted
        akka.persistence.snapshot-store.sql.read-isolation-level = read-uncommitted
        akka.persistence.query.journal.sql.read-isolation-level = read-uncommitted
        """;

    /// <summary>
    /// Turns off Akka.Persistence's replay filter for the journal. Akka.Persistence.Sql stamps each row
    /// with the writing node's journal id, not the entity incarnation's, so an entity that comes back to
    /// a node it was on before (a shard moved away and back, a node killed twice) looks like an old
    /// writer whose later events are stray, and the default repair discards exactly its newest events on
    /// the next recovery. One writer per entity is what sharding guarantees, and the journal's unique
    /// (persistence id, sequence number) index refuses a second write of a sequence number.
    /// </summary>
    public const string NoReplayFilter = "akka.persistence.journal.sql.replay-filter.mode = off";

    public static (string ConnectionString, string ProviderName) Resolve(StorageSettings storage) => storage.Provider switch
    {
        StorageProvider.Sqlite => (PrepareSqlite(storage), ProviderName.SQLiteMS),
        StorageProvider.Postgres => (
            string.IsNullOrWhiteSpace(storage.ConnectionString)
                ? throw new InvalidOperationException("Weft:Storage:ConnectionString is required when the storage provider is Postgres")
                : BoundPostgresPool(storage.ConnectionString),
            ProviderName.PostgreSQL15),
        _ => throw new InvalidOperationException($"unknown storage provider {storage.Provider}"),
    };

    /// <summary>Connections one node opens to PostgreSQL when the connection string does not say (Npgsql's own default is 100).</summary>
    public const int DefaultPostgresPoolSize = 25;

    private static readonly string[] PoolSizeKeywords = ["Maximum Pool Size", "MaxPoolSize"];

    /// <summary>
    /// Gives the connection string a pool bound unless it names one. Npgsql's default of 100 per node
    /// lets three nodes ask for more connections than PostgreSQL's default max_connections (100): in a
    /// failover storm, hundreds of entities recover at once (akka.persistence.max-concurrent-recoveries)
    /// and the server refuses the surplus ("too many clients already"), failing those recoveries. With
    /// a bound, recoveries wait their turn for a connection instead. Keep nodes × pool below max_connections.
    /// </summary>
    public static string BoundPostgresPool(string connectionString)
    {
        // The keys as written (Npgsql's own builder knows every keyword, set or not).
        var written = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString };
        if (PoolSizeKeywords.Any(written.ContainsKey)) return connectionString;
        return new Npgsql.NpgsqlConnectionStringBuilder(connectionString) { MaxPoolSize = DefaultPostgresPoolSize }.ConnectionString;
    }

    /// <summary>
    /// Creates the data folder and switches the database file to WAL before the actor system opens it:
    /// WAL lets readers run beside the one writer, and roughly triples the journal's write rate here.
    /// Synchronous stays FULL, so an acknowledged write survives a crash or power loss.
    /// </summary>
    public static string PrepareSqlite(StorageSettings storage)
    {
        string connectionString;
        if (!string.IsNullOrWhiteSpace(storage.ConnectionString))
        {
            connectionString = storage.ConnectionString;
        }
        else
        {
            var folder = Path.GetFullPath(storage.DataDirectory);
            var database = StorageSettings.SqliteDatabaseIn(folder);
            OwnerOnly(folder, database);
            connectionString = new SqliteConnectionStringBuilder
            {
                DataSource = database,
                DefaultTimeout = 30,
            }.ToString();
        }

        using var connection = new SqliteConnection(connectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode=WAL;";
        var mode = command.ExecuteScalar() as string;
        if (!string.Equals(mode, "wal", StringComparison.OrdinalIgnoreCase))
            throw new InvalidOperationException($"SQLite refused WAL mode (got '{mode}') for {connection.DataSource}");
        return connectionString;
    }

    /// <summary>Creates a data folder only its owner may enter (0700); an existing folder is left as the operator made it.</summary>
    public static void CreateOwnerOnlyFolder(string folder)
    {
        if (Directory.Exists(folder)) return;
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(folder);
        else Directory.CreateDirectory(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    /// <summary>
    /// The database holds every tailnet's secrets: a new data folder is the owner's alone (0700), and the
    /// database file is created, or tightened, to 0600 before SQLite opens it. SQLite gives its -wal and
    /// -shm files the database's mode.
    /// </summary>
    private static void OwnerOnly(string folder, string database)
    {
        CreateOwnerOnlyFolder(folder);
        if (OperatingSystem.IsWindows()) return;
        const UnixFileMode ownerReadWrite = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        if (!File.Exists(database))
        {
            using var created = new FileStream(database, new FileStreamOptions
            {
                Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = ownerReadWrite,
            });
            return;
        }
        foreach (var file in new[] { database, database + "-wal", database + "-shm" })
        {
            if (File.Exists(file) && (File.GetUnixFileMode(file) & ~ownerReadWrite & ~UnixFileMode.UserExecute) != 0)
                File.SetUnixFileMode(file, ownerReadWrite);
        }
    }
}
