using Akka.Actor;
using Akka.Hosting;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Replication;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// The shard regions the admin endpoints talk to, and the one rule of tenant isolation: a tailnet
/// key resolves its own tailnet and nothing else. Another tenant's tailnet answers exactly as a
/// tailnet that does not exist, so existence never leaks.
/// <para>
/// Names resolve from this node's replica of the directory, so no request waits on the one
/// directory entity; it is asked only when the replica has nothing yet (a node that just started)
/// or does not know the name (it may trail a rename on an unreachable node by a gossip round).
/// </para>
/// </summary>
public sealed class TailnetRefs(
    IRequiredActor<TailnetDirectoryActor> directory,
    IRequiredActor<TailnetActor> tailnets,
    IRequiredActor<Devices.DeviceActor> devices,
    IRequiredActor<ApiKeyRegistryActor> apiKeys,
    Replica<TailnetDirectoryState> names,
    Replica<ApiKeyRegistryState> keys)
{
    /// <summary>How long a lookup that the replica could not answer waits for the directory before it counts as "no such tailnet".</summary>
    private static readonly TimeSpan MissTimeout = TimeSpan.FromSeconds(2);

    public IActorRef Directory => directory.ActorRef;
    public IActorRef Tailnets => tailnets.ActorRef;
    public IActorRef Devices => devices.ActorRef;
    public IActorRef ApiKeys => apiKeys.ActorRef;

    /// <summary>This node's copy of every API key (null until the first replication arrives).</summary>
    public Task<ApiKeyRegistryState?> KeyReplicaAsync(HttpContext http) => keys.ReadAsync(http.RequestAborted);

    /// <summary>The tailnet named by id or name, if the caller may see it.</summary>
    public async Task<TailnetEntry> ResolveAsync(HttpContext http, string idOrName)
    {
        var caller = ApiCaller.Of(http);
        var entry = await FindAsync(http, idOrName);
        if (entry is not null && (caller.IsOperator || entry.TailnetId == caller.TailnetId))
        {
            Audit.AuditTrail.ConcernsTailnet(http, entry.TailnetId);
            return entry;
        }
        throw ApiException.From(TailnetDirectoryState.NotFound(idOrName));
    }

    /// <summary>Every active tailnet, from the replica when this node has one.</summary>
    public async Task<TailnetListing> ListAsync(HttpContext http) =>
        await names.ReadAsync(http.RequestAborted) is { } replica ? replica.List() : await Directory.AskFor<TailnetListing>(new ListTailnets(), http);

    /// <summary>The active tailnet named by id or name, whoever asks (the caller's access is not checked: see <see cref="ResolveAsync"/>).</summary>
    public async Task<TailnetEntry?> FindAsync(HttpContext http, string idOrName)
    {
        if (await names.ReadAsync(http.RequestAborted) is not { } replica) return await Directory.AskFor<object>(new FindTailnet(idOrName), http) as TailnetEntry;
        if (replica.FindActive(idOrName) is { } found) return found.ToEntry();
        try
        {
            return await Directory.Ask<object>(new FindTailnet(idOrName), MissTimeout, http.RequestAborted) as TailnetEntry;
        }
        catch (AskTimeoutException)
        {
            return null;
        }
    }

    /// <summary>
    /// Every device of the tailnet (or every one in <paramref name="status"/>), asked a page at a time so
    /// that no answer between nodes nears the frame limit. Devices are read in id order as the pages
    /// come: one created meanwhile with an id before the page being read is not in this listing.
    /// </summary>
    public async Task<List<DeviceInfo>> AllDevicesAsync(HttpContext http, string tailnetId, DeviceStatus? status = null)
    {
        var all = new List<DeviceInfo>();
        string? after = null;
        do
        {
            var page = await Tailnets.AskFor<DeviceList>(new ListDevices(tailnetId) { After = after, Limit = DevicePages.MaxLimit, Status = status }, http);
            all.AddRange(page.InState(status));
            after = page.Next;
        }
        while (after is not null);
        return all;
    }

    /// <summary>Refuses a tenant key on an endpoint that only operators may use.</summary>
    public static void RequireOperator(HttpContext http, string what)
    {
        if (!ApiCaller.Of(http).IsOperator)
            throw new ApiException(ApiErrorCodes.Forbidden, $"{what} needs an operator key; this key administers one tailnet");
    }
}
