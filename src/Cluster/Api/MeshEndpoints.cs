using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// The tailnet as a graph, for the console: <c>GET …/mesh</c> once, and <c>GET …/events</c> as a
/// stream of server-sent events that sends the graph again whenever it changes (devices that join,
/// go online or offline, change endpoints, or are expired or removed; policy edits that change who
/// may reach whom). The stream looks each <see cref="Interval"/> and sends only what differs.
/// </summary>
public static class MeshEndpoints
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);
    /// <summary>A comment line this often keeps proxies from closing a quiet stream.</summary>
    private static readonly TimeSpan Heartbeat = TimeSpan.FromSeconds(15);
    /// <summary>
    /// How many looks between two checks that the caller may still read: a stream outlives its request's one
    /// check, and a key revoked, a console session expired or a user deleted or demoted since ends it.
    /// </summary>
    private const int LooksPerCallerCheck = 5;

    public static void MapMeshEndpoints(this RouteGroupBuilder api)
    {
        var tailnet = api.MapGroup("/tailnets/{tailnet}");
        tailnet.MapGet("/mesh", GetMesh);
        tailnet.MapGet("/events", StreamEvents);
    }

    private static async Task<IResult> GetMesh(HttpContext http, string tailnet, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        return Results.Json(await ReadMesh(http, refs, entry.TailnetId), AdminJson.Options);
    }

    /// <summary>
    /// Event streams one tailnet may hold open on a node. Each reads the whole tailnet (its devices, users and
    /// graph, through its entity) every second for as long as it lasts; a console tab needs one, and a script
    /// opening a hundred would keep the tailnet's entity busy, delaying its own deltas, and hold the admin listener's connections.
    /// </summary>
    public const int StreamsPerTailnet = 16;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> OpenStreams = new();

    private static async Task StreamEvents(HttpContext http, string tailnet, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet); // a wrong or foreign tailnet fails here, as JSON, before the stream starts
        if (OpenStreams.AddOrUpdate(entry.TailnetId, 1, (_, open) => open + 1) > StreamsPerTailnet)
        {
            LeaveStream(entry.TailnetId);
            await ApiErrorMiddleware.WriteAsync(http, ApiErrorCodes.RateLimited,
                $"this tailnet already has {StreamsPerTailnet} event streams open on this node; close one (or use GET …/mesh)", retryAfterSeconds: 10);
            return;
        }
        try
        {
            await StreamEventsOf(http, entry, refs);
        }
        finally
        {
            LeaveStream(entry.TailnetId);
        }
    }

    private static void LeaveStream(string tailnetId)
    {
        // Down by one, and the entry gone at zero (a tailnet with no stream open costs nothing here).
        while (OpenStreams.TryGetValue(tailnetId, out var open))
        {
            if (open <= 1 ? OpenStreams.TryRemove(new KeyValuePair<string, int>(tailnetId, open)) : OpenStreams.TryUpdate(tailnetId, open - 1, open)) return;
        }
    }

    /// <summary>How many event streams of <paramref name="tailnetId"/> are open on this node.</summary>
    public static int OpenStreamsOf(string tailnetId) => OpenStreams.GetValueOrDefault(tailnetId);

    private static async Task StreamEventsOf(HttpContext http, TailnetEntry entry, TailnetRefs refs)
    {
        var response = http.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-store";
        response.Headers["X-Accel-Buffering"] = "no";
        await response.Body.FlushAsync(http.RequestAborted);

        string? last = null;
        var quietSince = DateTimeOffset.UtcNow;
        var looks = 0;
        using var timer = new PeriodicTimer(Interval);
        try
        {
            do
            {
                if (++looks % LooksPerCallerCheck == 0 && await CallerRefusedAsync(http, refs) is { } refused)
                {
                    await WriteGoneAsync(http, refused);
                    return;
                }
                string? current;
                try
                {
                    current = JsonSerializer.Serialize(await ReadMesh(http, refs, entry.TailnetId), AdminJson.Options);
                }
                catch (ApiException e) when (e.Code == ApiErrorCodes.NotFound)
                {
                    await WriteGoneAsync(http, new ApiError(e.Code, e.Message));
                    return;
                }
                catch (ApiException)
                {
                    current = null; // the cluster is busy or a node is moving: the next look sends it
                }
                if (current is not null && current != last)
                {
                    await response.WriteAsync($"event: mesh\ndata: {current}\n\n", http.RequestAborted);
                    last = current;
                    quietSince = DateTimeOffset.UtcNow;
                }
                else if (DateTimeOffset.UtcNow - quietSince >= Heartbeat)
                {
                    await response.WriteAsync(": still here\n\n", http.RequestAborted);
                    quietSince = DateTimeOffset.UtcNow;
                }
                await response.Body.FlushAsync(http.RequestAborted);
            } while (await timer.WaitForNextTickAsync(http.RequestAborted));
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // The console closed the stream.
        }
    }

    /// <summary>The stream's last event: the tailnet is gone, or the caller may no longer read it.</summary>
    private static Task WriteGoneAsync(HttpContext http, ApiError why) =>
        http.Response.WriteAsync($"event: gone\ndata: {JsonSerializer.Serialize(why, AdminJson.Options)}\n\n", http.RequestAborted);

    /// <summary>Why the stream's caller may no longer read (null: it still may, or the cluster could not tell now: the next check asks again).</summary>
    private static async Task<ApiError?> CallerRefusedAsync(HttpContext http, TailnetRefs refs)
    {
        try
        {
            await ApiKeyAuthentication.CallerAsync(http, refs);
            return null;
        }
        catch (ApiException e) when (e.Code is ApiErrorCodes.Unauthorized or ApiErrorCodes.Forbidden)
        {
            return new ApiError(e.Code, e.Message);
        }
        catch (ApiException)
        {
            return null;
        }
    }

    private static async Task<MeshResource> ReadMesh(HttpContext http, TailnetRefs refs, string tailnetId)
    {
        var devices = await refs.AllDevicesAsync(http, tailnetId);
        var users = await refs.Tailnets.AskFor<UserList>(new ListUsers(tailnetId), http);
        var links = await refs.Tailnets.AskFor<MeshLinks>(new GetMesh(tailnetId), http);
        var byId = devices.ToDictionary(d => d.Device.DeviceId);
        return new MeshResource(
            devices.OrderBy(d => d.Device.Name, StringComparer.Ordinal).Select(d => MemberEndpoints.ToResource(d, users)).ToList(),
            links.Links
                .Where(l => byId.ContainsKey(l.A) && byId.ContainsKey(l.B))
                .Select(l => new MeshLinkResource(l.A, l.B, ExpectedPath(byId[l.A], byId[l.B])))
                .ToList(),
            links.Complete);
    }

    private static string ExpectedPath(DeviceInfo a, DeviceInfo b) =>
        !a.Online || !b.Online ? "offline"
        : a.Device.Endpoints.Any() && b.Device.Endpoints.Any() ? "direct"
        : "relayed";
}
