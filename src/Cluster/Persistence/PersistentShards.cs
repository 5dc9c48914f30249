using Akka.Cluster.Sharding;
using Akka.Cluster.Hosting;

namespace Weft.Cluster.Persistence;

/// <summary>
/// The shard options of every region of <see cref="EventSourcedEntity{TState,TEvent}"/>s, so that no
/// region forgets to stop its entities with <see cref="StopEntity"/> (after their write in flight)
/// instead of Akka's PoisonPill.
/// </summary>
public static class PersistentShards
{
    /// <summary>Entities started on demand, stopped when idle for <paramref name="passivateIdleAfter"/> (default: akka.cluster.sharding's).</summary>
    public static ShardOptions OnDemand(TimeSpan? passivateIdleAfter = null) => new()
    {
        PassivateIdleEntityAfter = passivateIdleAfter,
        HandOffStopMessage = StopEntity.Instance,
    };

    /// <summary>
    /// Entities that own timers (tailnet housekeeping, the directory's retries of interrupted
    /// creations and removals) must always be running, not only when a message happens to wake them.
    /// Remembering them makes sharding start them again after a rebalance or the loss of their node,
    /// and turns idle passivation off for them, so keep it for entities that are few (one per tenant,
    /// or one per cluster). The memory of who is remembered is kept in the journal (event-sourced
    /// store): distributed data is not durable here.
    /// </summary>
    public static ShardOptions Remembered() => new()
    {
        RememberEntities = true,
        RememberEntitiesStore = RememberEntitiesStore.Eventsourced,
        HandOffStopMessage = StopEntity.Instance,
    };
}
