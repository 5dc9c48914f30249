using Akka.Actor;
using Weft.Cluster.Persistence;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>Asks an entity on behalf of an API request, turning refusals and timeouts into <see cref="ApiException"/>s.</summary>
public static class ClusterAsk
{
    /// <summary>Long enough for a cold entity to recover and write; short enough for a CLI user.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    public static async Task<T> AskFor<T>(this IActorRef entity, object message, CancellationToken cancellation)
    {
        object answer;
        try
        {
            answer = await entity.Ask<object>(message, Timeout, cancellation);
        }
        catch (AskTimeoutException)
        {
            throw new ApiException(ApiErrorCodes.Unavailable, $"the cluster did not answer within {Timeout.TotalSeconds:0} s; retry shortly");
        }
        return answer switch
        {
            T expected => expected,
            Rejection rejection => throw ApiException.From(rejection),
            _ => throw new InvalidOperationException($"{message.GetType().Name} got an unexpected {answer.GetType().Name}"),
        };
    }
}
