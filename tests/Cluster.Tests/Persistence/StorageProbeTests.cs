using Weft.Cluster.Persistence;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Persistence;

/// <summary>The store probe behind readiness and the admin API's "storage is unavailable", against a store that takes connections and says nothing.</summary>
public sealed class StorageProbeTests
{
    [Fact]
    public async Task A_look_its_caller_gives_up_on_is_not_kept_as_the_store_being_down()
    {
        // A PostgreSQL server that hangs: the connection is taken, nothing is ever answered.
        await using var hung = LoopbackPeer.Serving((_, stop) => Task.Delay(Timeout.Infinite, stop));
        var probe = new StorageProbe(new StorageSettings
        {
            Provider = StorageProvider.Postgres,
            ConnectionString = $"Host=127.0.0.1;Port={hung.Port};Username=weft;Password=weft;Database=weft;Pooling=false",
        }, TimeProvider.System);

        // An admin request aborted by its client 200 ms into the look (the look itself waits up to 2 s).
        using var aborted = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => probe.CheckAsync(aborted.Token));
        var afterAbort = DateTimeOffset.UtcNow;

        // The next caller gets a look of its own, which waits out the query timeout: not the abandoned one.
        var status = await probe.CheckAsync(CancellationToken.None);
        Assert.False(status.Reachable);
        Assert.Contains("no answer within", status.Detail);
        Assert.True(status.At > afterAbort, $"the status is from {status.At:O}, before the aborted look ended ({afterAbort:O})");
    }
}
