using System.Net;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Api;

/// <summary>
/// The console's event stream (<c>GET …/events</c>) over real HTTP: it sends the mesh as it changes, and it
/// lasts longer than the one check of its request, so it checks its caller again as it goes.
/// </summary>
public class MeshEventsTests
{
    [Fact]
    public async Task The_event_stream_sends_the_mesh_as_devices_join_and_ends_once_its_key_is_revoked()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet("events")).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        var tenant = await (await node.Http.PostJson("/api/v1/api-keys", new { scope = "tailnet", tailnet })).ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);
        using var asTenant = TestCoordinator.NewClient(node.Api, tenant.Key);
        asTenant.Timeout = Timeout.InfiniteTimeSpan;
        using var response = await asTenant.GetAsync($"/api/v1/tailnets/{tailnet}/events", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var events = new StreamReader(await response.Content.ReadAsStreamAsync());

        Assert.Equal("mesh", (await NextEvent(events))!.Value.Event);
        using var a = TestAgent.Start(agents, [node.Control], "a", key);
        await a.WaitForState(Weft.NodeAgent.Control.ControlState.Running);
        var withA = (await NextEvent(events))!.Value;
        Assert.Equal("mesh", withA.Event);
        Assert.Contains(a.DeviceId!, withA.Data);

        // The key is revoked (it leaked): the stream ends within a few seconds, and a device that joins later is not shown.
        Assert.Equal(HttpStatusCode.NoContent, (await node.Http.DeleteAsync($"/api/v1/api-keys/{tenant.ApiKey.Id}")).StatusCode);
        await Task.Delay(TimeSpan.FromSeconds(6));
        using var b = TestAgent.Start(agents, [node.Control], "b", key);
        await b.WaitForState(Weft.NodeAgent.Control.ControlState.Running);
        var last = (await NextEvent(events))!.Value;
        Assert.Equal("gone", last.Event);
        Assert.Contains(ApiErrorCodes.Unauthorized, last.Data);
        Assert.DoesNotContain(b.DeviceId!, last.Data);
        Assert.Null(await NextEvent(events)); // and the stream is over
    }

    [Fact]
    public async Task A_tailnet_holds_a_bounded_number_of_event_streams_and_one_closed_makes_room()
    {
        // Each stream reads the whole tailnet every second through its entity: a script opening hundreds would keep
        // that entity busy (delaying the tailnet's own deltas) and fill the admin listener's connections.
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        var tailnet = (await node.Http.CreateTailnet("streams")).Id;
        using var client = TestCoordinator.NewClient(node.Api, TestCoordinator.OperatorKey);
        client.Timeout = Timeout.InfiniteTimeSpan;
        var open = new List<HttpResponseMessage>();
        try
        {
            for (var i = 0; i < Weft.Cluster.Api.MeshEndpoints.StreamsPerTailnet; i++)
            {
                var stream = await client.GetAsync($"/api/v1/tailnets/{tailnet}/events", HttpCompletionOption.ResponseHeadersRead);
                open.Add(stream);
                Assert.Equal(HttpStatusCode.OK, stream.StatusCode);
            }
            using var refused = await client.GetAsync($"/api/v1/tailnets/{tailnet}/events", HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal((HttpStatusCode)429, refused.StatusCode);
            Assert.Contains(ApiErrorCodes.RateLimited, await refused.Content.ReadAsStringAsync());
            Assert.NotNull(refused.Headers.RetryAfter);
            // Another tailnet is not held back by this one's streams.
            var other = (await node.Http.CreateTailnet("other-streams")).Id;
            using (var elsewhere = await client.GetAsync($"/api/v1/tailnets/{other}/events", HttpCompletionOption.ResponseHeadersRead))
                Assert.Equal(HttpStatusCode.OK, elsewhere.StatusCode);

            // The console closes one: its place is free once the node sees it gone.
            open[0].Dispose();
            open.RemoveAt(0);
            await Eventually.Until(() => Weft.Cluster.Api.MeshEndpoints.OpenStreamsOf(tailnet) < Weft.Cluster.Api.MeshEndpoints.StreamsPerTailnet, "the closed stream's place freed");
            var again = await client.GetAsync($"/api/v1/tailnets/{tailnet}/events", HttpCompletionOption.ResponseHeadersRead);
            open.Add(again);
            Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        }
        finally
        {
            foreach (var stream in open) stream.Dispose();
        }
        await Eventually.Until(() => Weft.Cluster.Api.MeshEndpoints.OpenStreamsOf(tailnet) == 0, "every stream's place given back");
    }

    /// <summary>The next server-sent event (comment lines skipped), or null when the stream ends; within 20 s.</summary>
    private static async Task<(string Event, string Data)?> NextEvent(StreamReader events)
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        string? name = null, data = null;
        while (await events.ReadLineAsync(limit.Token) is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal)) name = line["event: ".Length..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal)) data = line["data: ".Length..];
            else if (line.Length == 0 && name is not null) return (name, data ?? "");
        }
        return null;
    }
}
