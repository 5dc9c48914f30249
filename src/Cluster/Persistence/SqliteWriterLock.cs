namespace Weft.Cluster.Persistence;

/// <summary>
/// One coordinator per SQLite database. A second process started on the same data folder (a second
/// <c>weft</c> in another terminal, a unit started twice) would write the same entities' events beside
/// the first, each serving what it alone remembers. The first to start holds an exclusive lock on
/// <c>weft.db.lock</c> next to the database until it stops; a second refuses to start, and says why.
/// The lock is the kernel's (flock): it goes with the process, however the process ends.
/// </summary>
public sealed class SqliteWriterLock : IDisposable
{
    private readonly FileStream _held;

    private SqliteWriterLock(FileStream held) => _held = held;

    /// <summary>Takes the lock of the SQLite database these settings name; null for PostgreSQL or an in-memory database.</summary>
    public static SqliteWriterLock? Acquire(StorageSettings storage)
    {
        if (storage.Provider != StorageProvider.Sqlite || storage.SqliteDatabaseFile() is not { } database) return null;
        // The database holds every tailnet's secrets: a folder made for it is its owner's alone.
        PersistenceSetup.CreateOwnerOnlyFolder(Path.GetDirectoryName(database)!);
        var lockPath = database + ".lock";
        try
        {
            // FileShare.None is an exclusive, non-blocking flock on Unix: a second holder fails at once.
            var options = new FileStreamOptions { Mode = FileMode.OpenOrCreate, Access = FileAccess.ReadWrite, Share = FileShare.None };
            if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            return new SqliteWriterLock(new FileStream(lockPath, options));
        }
        catch (Exception e) when (e is UnauthorizedAccessException or DirectoryNotFoundException or PathTooLongException)
        {
            throw new InvalidOperationException($"cannot open {lockPath}, the lock of the SQLite database {database}: {e.Message}", e);
        }
        catch (IOException e)
        {
            // What is left is the lock held: FileShare.None's flock would block, and the open fails at once.
            throw new InvalidOperationException(
                $"another Weft coordinator is using the SQLite database {database} (it holds {lockPath}): two processes writing one database " +
                "would each serve what it alone remembers. Stop the other one, or give this one its own data folder (--data-dir); " +
                "a cluster of several nodes shares PostgreSQL instead", e);
        }
    }

    public void Dispose() => _held.Dispose();
}
