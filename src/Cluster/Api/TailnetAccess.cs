using Akka.Actor;
using Akka.Hosting;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// The shard regions the admin endpoints talk to, and the one rule of tenant isolation: a tailnet
/// key resolves its own tailnet and nothing else. Another tenant's tailnet answers exactly as a
/// tailnet that does not exist, so existence never leaks.
/// </summary>
public sealed class TailnetRefs(
    IRequiredActor<TailnetDirectoryActor> directory,
    IRequiredActor<TailnetActor> tailnets,
    IRequiredActor<Devices.DeviceActor> devices,
    IRequiredActor<ApiKeyRegistryActor> apiKeys)
{
    public IActorRef Directory => directory.ActorRef;
    public IActorRef Tailnets => tailnets.ActorRef;
    public IActorRef Devices => devices.ActorRef;
    public IActorRef ApiKeys => apiKeys.ActorRef;

    /// <summary>The tailnet named by id or name, if the caller may see it.</summary>
    public async Task<TailnetEntry> ResolveAsync(HttpContext http, string idOrName)
    {
        var caller = ApiCaller.Of(http);
        if (caller.IsOperator) return await Directory.AskFor<TailnetEntry>(new FindTailnet(idOrName), http.RequestAborted);
        var entry = await Directory.Ask<object>(new FindTailnet(idOrName), ClusterAsk.Timeout, http.RequestAborted);
        if (entry is TailnetEntry found && found.TailnetId == caller.TailnetId) return found;
        throw ApiException.From(TailnetDirectoryState.NotFound(idOrName));
    }

    /// <summary>Refuses a tenant key on an endpoint that only operators may use.</summary>
    public static void RequireOperator(HttpContext http, string what)
    {
        if (!ApiCaller.Of(http).IsOperator)
            throw new ApiException(ApiErrorCodes.Forbidden, $"{what} needs an operator key; this key administers one tailnet");
    }
}
