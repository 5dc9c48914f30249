using Akka.Actor;
using Akka.DistributedData;

namespace Weft.Cluster.Replication;

/// <summary>
/// This node's copy of a single writer's state (<see cref="ReplicatedState{T}"/>), read from the local
/// distributed-data replicator without asking any other node or entity. Because the writer answers
/// only once its change reached every reachable node's replicator, a read on any node right after
/// that answer sees the change. Null until the first value arrives (a node that just started, or a
/// cluster whose entity has not published yet): callers then ask the entity itself.
/// </summary>
public sealed class Replica<T>(ActorSystem system, string keyId) where T : class
{
    private static readonly TimeSpan LocalTimeout = TimeSpan.FromSeconds(2);

    private readonly LWWRegisterKey<T> _key = new(keyId);

    public async Task<T?> ReadAsync(CancellationToken cancellation)
    {
        try
        {
            var answer = await DistributedData.Get(system).Replicator.Ask<IGetResponse>(Dsl.Get(_key, ReadLocal.Instance), LocalTimeout, cancellation);
            return answer is GetSuccess found ? found.Get(_key).Value : null;
        }
        catch (AskTimeoutException)
        {
            return null;
        }
    }
}
