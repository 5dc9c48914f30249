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
}
