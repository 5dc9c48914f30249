using Microsoft.Data.Sqlite;
using Npgsql;

namespace Weft.Cluster.Persistence;

/// <summary>What the last look at the store found.</summary>
public sealed record StorageStatus(bool Reachable, string Detail, DateTimeOffset At);

/// <summary>
/// Whether this node reaches its store: one cheap query (SELECT 1) with a short timeout, at most
/// once a second however many callers ask. Readiness reports it, and admin requests that fail while
/// the store is known down answer at once with a clear error instead of retrying to their deadline.
/// </summary>
public sealed class StorageProbe(StorageSettings settings, TimeProvider clock)
{
    private static readonly TimeSpan Freshness = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan QueryTimeout = TimeSpan.FromSeconds(2);

    private readonly SemaphoreSlim _gate = new(1, 1);
    private volatile StorageStatus? _last;

    /// <summary>
    /// The store's status, looked at now or within the last second. A caller that gives up (its request was
    /// aborted) gets <see cref="OperationCanceledException"/>, and nothing is kept: a look cut short by its
    /// caller says nothing about the store, and kept, it would answer every request on this node
    /// "storage is unavailable" (and readiness false) for the next second.
    /// </summary>
    public async Task<StorageStatus> CheckAsync(CancellationToken cancellation)
    {
        if (_last is { } recent && clock.GetUtcNow() - recent.At < Freshness) return recent;
        await _gate.WaitAsync(cancellation);
        try
        {
            if (_last is { } fresh && clock.GetUtcNow() - fresh.At < Freshness) return fresh;
            return _last = await QueryAsync(cancellation);
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<StorageStatus> QueryAsync(CancellationToken cancellation)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        timeout.CancelAfter(QueryTimeout);
        try
        {
            if (settings.Provider == StorageProvider.Postgres)
            {
                // Npgsql waits for a server's first answer for its own connect timeout (15 s by default), whatever
                // the token says: a hung server would hold every look (and readiness) that long.
                var bounded = new NpgsqlConnectionStringBuilder(settings.ConnectionString) { Timeout = (int)QueryTimeout.TotalSeconds, CommandTimeout = (int)QueryTimeout.TotalSeconds };
                await using var connection = new NpgsqlConnection(bounded.ConnectionString);
                await connection.OpenAsync(timeout.Token);
                await using var command = new NpgsqlCommand("SELECT 1", connection);
                await command.ExecuteScalarAsync(timeout.Token);
            }
            else
            {
                var file = string.IsNullOrWhiteSpace(settings.ConnectionString)
                    ? new SqliteConnectionStringBuilder { DataSource = StorageSettings.SqliteDatabaseIn(settings.DataDirectory), Mode = SqliteOpenMode.ReadOnly }.ToString()
                    : settings.ConnectionString;
                await using var connection = new SqliteConnection(file);
                await connection.OpenAsync(timeout.Token);
                await using var command = connection.CreateCommand();
                command.CommandText = "SELECT 1";
                await command.ExecuteScalarAsync(timeout.Token);
            }
            return new StorageStatus(true, $"{settings.Provider} answers", clock.GetUtcNow());
        }
        catch (Exception e) when (e is NpgsqlException or SqliteException or OperationCanceledException or TimeoutException or InvalidOperationException or IOException)
        {
            cancellation.ThrowIfCancellationRequested(); // the caller gave up: what this look saw says nothing about the store
            var reason = e is OperationCanceledException or TimeoutException or NpgsqlException { InnerException: TimeoutException }
                ? $"no answer within {QueryTimeout.TotalSeconds:0} s" : e.Message;
            return new StorageStatus(false, $"{settings.Provider} unreachable: {reason}", clock.GetUtcNow());
        }
    }
}
