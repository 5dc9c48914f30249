using Akka.Actor;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.Persistence;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// Asks an entity on behalf of an API request. While the cluster moves entities (a node was lost or
/// is leaving, shards hand off, an entity recovers), a message can go unanswered or be refused as
/// unavailable for a few seconds; the request is then retried inside this node, with the very same
/// message, until its deadline, rather than failing at once. The same message makes a retried
/// command safe: every command is idempotent for its ids (creations carry the id they create).
/// Refusals become <see cref="ApiException"/>s. When the store itself is known to be down, there is
/// nothing to wait for, and the request fails at once with a clear error.
/// </summary>
public static class ClusterAsk
{
    /// <summary>How long one request may spend retrying: longer than downing a dead node and restarting its entities (akka.hocon).</summary>
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);
    /// <summary>One attempt: long enough for a cold entity to recover and write.</summary>
    public static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(4);
    private static readonly TimeSpan Pause = TimeSpan.FromMilliseconds(250);

    public static Task<T> AskFor<T>(this IActorRef entity, object message, HttpContext http) =>
        AskFor<T>(entity, message, http.RequestAborted, http.RequestServices.GetService<StorageProbe>(), system: http.RequestServices.GetService<ActorSystem>());

    /// <summary>Asks for a removal: a retry that finds the object gone after an unanswered attempt counts as done.</summary>
    public static async Task Remove(this IActorRef entity, object message, HttpContext http) =>
        await AskFor<object>(entity, message, http.RequestAborted, http.RequestServices.GetService<StorageProbe>(), removal: true,
            system: http.RequestServices.GetService<ActorSystem>());

    public static async Task<T> AskFor<T>(this IActorRef entity, object message, CancellationToken cancellation, StorageProbe? storage = null, bool removal = false,
        ActorSystem? system = null)
    {
        var deadline = DateTimeOffset.UtcNow + Deadline;
        var unanswered = false;
        var sent = Telemetry.Traced.Wrap(message); // a tailnet command carries the request's trace to the entity
        while (true)
        {
            object answer;
            try
            {
                answer = await entity.Ask<object>(sent, AttemptTimeout, cancellation);
            }
            catch (AskTimeoutException)
            {
                unanswered = true;
                await BeforeRetry(deadline, storage, system, $"the cluster did not answer within {Deadline.TotalSeconds:0} s; retry shortly", cancellation);
                continue;
            }
            switch (answer)
            {
                case Rejection { Code: ApiErrorCodes.NotFound } when removal && unanswered:
                    return default!; // the unanswered attempt did it
                case Rejection { Code: ApiErrorCodes.Unavailable } unavailable:
                    await BeforeRetry(deadline, storage, system, unavailable.Message, cancellation);
                    continue;
                case T expected:
                    return expected;
                case Rejection rejection:
                    throw ApiException.From(rejection);
                default:
                    if (removal) return default!;
                    throw new InvalidOperationException($"{message.GetType().Name} got an unexpected {answer.GetType().Name}");
            }
        }
    }

    private static async Task BeforeRetry(DateTimeOffset deadline, StorageProbe? storage, ActorSystem? system, string failure, CancellationToken cancellation)
    {
        if (system is not null && CoordinatedShutdown.Get(system).ShutdownReason is not null)
            throw new ApiException(ApiErrorCodes.Unavailable, "this coordinator is shutting down; another node of the cluster serves this request");
        if (storage is not null && (await storage.CheckAsync(cancellation)) is { Reachable: false } down)
            throw new ApiException(ApiErrorCodes.Unavailable, $"storage is unavailable ({down.Detail}); retry when it is back (a creation with the same Idempotency-Key)");
        if (DateTimeOffset.UtcNow + Pause > deadline) throw new ApiException(ApiErrorCodes.Unavailable, failure);
        await Task.Delay(Pause, cancellation);
    }
}
