namespace Weft.Cluster.Persistence;

/// <summary>
/// What an entity's pure logic decided for one command: the events to persist (possibly none),
/// or a rejection that leaves the state untouched.
/// </summary>
public readonly record struct Decision<TEvent>(IReadOnlyList<TEvent> Events, Rejection? Rejection)
{
    public static Decision<TEvent> Accept(params TEvent[] events) => new(events, null);
    public static Decision<TEvent> Accept(IReadOnlyList<TEvent> events) => new(events, null);
    public static Decision<TEvent> Unchanged => new(Array.Empty<TEvent>(), null);
    public static Decision<TEvent> Reject(Rejection rejection) => new(Array.Empty<TEvent>(), rejection);

    public bool IsRejected => Rejection is not null;
}
