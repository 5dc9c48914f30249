using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Api;

/// <summary>One address may make a bounded number of admin requests a second; the rest of the world is not slowed by it.</summary>
public class AdminRateLimitTests
{
    /// <summary>A client whose connections come from <paramref name="source"/> (another loopback address is another client).</summary>
    private static HttpClient ClientFrom(IPAddress source, Uri api, string? apiKey)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (context, cancel) =>
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                socket.Bind(new IPEndPoint(source, 0));
                await socket.ConnectAsync(context.DnsEndPoint, cancel);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        var client = new HttpClient(handler) { BaseAddress = api, Timeout = TimeSpan.FromSeconds(30) };
        if (apiKey is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        return client;
    }

    [Fact]
    public async Task A_flood_from_one_address_is_answered_429_with_a_retry_time_and_another_address_is_served()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Api:RequestsPerSecondPerAddress", "2")]);
        using var flooder = ClientFrom(IPAddress.Parse("127.0.0.2"), node.Api, TestCoordinator.OperatorKey);
        using var anonymous = ClientFrom(IPAddress.Parse("127.0.0.2"), node.Api, apiKey: null);
        using var other = ClientFrom(IPAddress.Parse("127.0.0.3"), node.Api, TestCoordinator.OperatorKey);

        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? limited = null;
        for (var i = 0; i < 20; i++)
        {
            var response = await flooder.GetAsync("/api/v1/tailnets");
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests) limited ??= response;
        }

        Assert.Equal(HttpStatusCode.OK, statuses[0]);
        Assert.NotNull(limited);
        Assert.True(limited!.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1), $"Retry-After: {limited.Headers.RetryAfter}");
        Assert.Equal(ApiErrorCodes.RateLimited, (await limited.ReadError(HttpStatusCode.TooManyRequests)).Code);
        // Refused before any key is looked at: guessing keys from there is just as limited.
        Assert.Equal(HttpStatusCode.TooManyRequests, (await anonymous.GetAsync("/api/v1/tailnets")).StatusCode);
        // Another client is served meanwhile.
        await (await other.GetAsync("/api/v1/tailnets")).ReadAs<TailnetListResource>(HttpStatusCode.OK);
    }

    [Fact]
    public async Task One_key_used_from_many_addresses_is_limited_too_and_another_key_is_served()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage,
            [new("Weft:Api:RequestsPerSecondPerAddress", "0"), new("Weft:Api:RequestsPerSecondPerKey", "2")]);
        using var setup = ClientFrom(IPAddress.Parse("127.0.0.9"), node.Api, TestCoordinator.OperatorKey);
        var second = await (await setup.PostJson("/api/v1/api-keys", new { scope = "operator", description = "second" })).ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);

        var clients = Enumerable.Range(2, 8).Select(i => ClientFrom(IPAddress.Parse($"127.0.0.{i}"), node.Api, TestCoordinator.OperatorKey)).ToList();
        var statuses = new List<HttpStatusCode>();
        foreach (var client in clients.Concat(clients)) statuses.Add((await client.GetAsync("/api/v1/tailnets")).StatusCode);
        foreach (var client in clients) client.Dispose();

        Assert.Contains(HttpStatusCode.TooManyRequests, statuses);
        using var other = ClientFrom(IPAddress.Parse("127.0.0.2"), node.Api, second.Key);
        await (await other.GetAsync("/api/v1/tailnets")).ReadAs<TailnetListResource>(HttpStatusCode.OK);
    }

    [Fact]
    public async Task A_forged_key_under_a_real_keys_id_cannot_empty_that_keys_bucket()
    {
        // A key's id is no secret (a tenant's audit log names the operator key that acted on it). Counted by id alone,
        // requests with the id and a made-up secret took the real key's bucket, and every call of its holder got 429.
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage,
            [new("Weft:Api:RequestsPerSecondPerAddress", "0"), new("Weft:Api:RequestsPerSecondPerKey", "2")]);
        var keyId = TestCoordinator.OperatorKey.Split('_')[1];
        var forged = $"weft_{keyId}_{new string('a', TestCoordinator.OperatorKey.Split('_')[2].Length)}";
        using var attacker = ClientFrom(IPAddress.Parse("127.0.0.7"), node.Api, forged);
        var refused = new List<HttpStatusCode>();
        for (var i = 0; i < 10; i++) refused.Add((await attacker.GetAsync("/api/v1/tailnets")).StatusCode);
        Assert.Contains(HttpStatusCode.TooManyRequests, refused); // the forger's own bucket ran dry

        using var holder = ClientFrom(IPAddress.Parse("127.0.0.8"), node.Api, TestCoordinator.OperatorKey);
        await (await holder.GetAsync("/api/v1/tailnets")).ReadAs<TailnetListResource>(HttpStatusCode.OK);
    }
}
