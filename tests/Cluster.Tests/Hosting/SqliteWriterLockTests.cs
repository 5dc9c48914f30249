using System.Net;
using Weft.Cluster.Hosting;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Hosting;

/// <summary>One coordinator per SQLite database: a second one on the same data folder refuses to start, and says why.</summary>
public class SqliteWriterLockTests
{
    [Fact]
    public async Task A_second_coordinator_on_the_same_sqlite_database_refuses_to_start_until_the_first_has_stopped()
    {
        await using var storage = TestStorage.NewSqlite();
        var first = await TestCoordinator.StartAsync(storage);
        var tailnet = await first.Http.CreateTailnet("kept");

        var refused = Assert.Throws<InvalidOperationException>(() => CoordinatorHost.Build(storage.Settings.Concat(
            [new("Weft:Api:Listen", "http://127.0.0.1:0"), new("Weft:Control:Listen", "http://127.0.0.1:0"), new("Weft:Cluster:Port", "0")])));
        Assert.Contains("another Weft coordinator is using the SQLite database", refused.Message);
        Assert.Contains("weft.db.lock", refused.Message);
        Assert.Equal(tailnet, await first.Http.GetTailnet(tailnet.Id)); // the first goes on as it was

        await first.DisposeAsync();
        await using var next = await TestCoordinator.StartAsync(storage);
        Assert.Equal(tailnet, await next.Http.GetTailnet(tailnet.Id));
    }

    [Fact]
    public void A_database_named_by_its_connection_string_in_a_folder_not_made_yet_is_locked_once_and_the_folder_made()
    {
        var folder = Path.Combine(Path.GetTempPath(), $"weft-test-{Guid.NewGuid():N}");
        try
        {
            var storage = new Weft.Cluster.Persistence.StorageSettings { ConnectionString = $"Data Source={Path.Combine(folder, "new", "weft.db")}" };

            using (var held = Weft.Cluster.Persistence.SqliteWriterLock.Acquire(storage))
            {
                Assert.NotNull(held);
                Assert.True(File.Exists(Path.Combine(folder, "new", "weft.db.lock")));
                Assert.Contains("another Weft coordinator", Assert.Throws<InvalidOperationException>(() => Weft.Cluster.Persistence.SqliteWriterLock.Acquire(storage)).Message);
            }
            using var again = Weft.Cluster.Persistence.SqliteWriterLock.Acquire(storage);
            Assert.NotNull(again);
            Assert.Null(Weft.Cluster.Persistence.SqliteWriterLock.Acquire(new Weft.Cluster.Persistence.StorageSettings { ConnectionString = "Data Source=:memory:" }));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
