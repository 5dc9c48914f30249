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
}
