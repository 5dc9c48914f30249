namespace Weft.Cluster.Persistence;

public enum StorageProvider
{
    /// <summary>Embedded, in <see cref="StorageSettings.DataDirectory"/>. A single coordinator node only.</summary>
    Sqlite,
    /// <summary>Shared by every node of a multi-node cluster.</summary>
    Postgres,
}

/// <summary>Where events and snapshots are stored. Bound from <c>Weft:Storage</c>.</summary>
public sealed class StorageSettings
{
    public StorageProvider Provider { get; set; } = StorageProvider.Sqlite;

    /// <summary>For SQLite: the folder holding <c>weft.db</c>.</summary>
    public string DataDirectory { get; set; } = "./data";

    /// <summary>Required for PostgreSQL (an Npgsql connection string). For SQLite it overrides the data folder.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>The SQLite database file a node keeps in <paramref name="dataDirectory"/>.</summary>
    public static string SqliteDatabaseIn(string dataDirectory) => Path.Combine(Path.GetFullPath(dataDirectory), "weft.db");

    /// <summary>
    /// The SQLite database file these settings name, as a full path: the data folder's, or the one a connection
    /// string names (by path, or by a <c>file:</c> URI such as <c>file:/var/lib/weft/weft.db?cache=shared</c>).
    /// Null for an in-memory database.
    /// </summary>
    public string? SqliteDatabaseFile()
    {
        if (string.IsNullOrWhiteSpace(ConnectionString)) return SqliteDatabaseIn(DataDirectory);
        var named = new Microsoft.Data.Sqlite.SqliteConnectionStringBuilder(ConnectionString);
        if (named.Mode == Microsoft.Data.Sqlite.SqliteOpenMode.Memory || named.DataSource is "" or ":memory:") return null;
        return Path.GetFullPath(named.DataSource.StartsWith("file:", StringComparison.OrdinalIgnoreCase) ? new Uri(named.DataSource).LocalPath : named.DataSource);
    }
}
