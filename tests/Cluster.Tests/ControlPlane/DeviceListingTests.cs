using System.Net;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>
/// Listing a tailnet's devices through the API: all at once (as Tailscale's API answers), or a page at a
/// time with a cursor; by state; and a device found by its name without the whole list crossing the cluster.
/// </summary>
public class DeviceListingTests(SharedCoordinator coordinator) : IClassFixture<SharedCoordinator>
{
    private HttpClient Http => coordinator.Http;

    private async Task<string> TailnetWithDevices(int active, int pending)
    {
        var name = $"list-{Guid.NewGuid():N}"[..20];
        var tailnetId = (await Http.CreateTailnet(name)).Id;
        await (await Http.PatchJson($"/api/v1/tailnets/{tailnetId}", new { keylessRegistration = true })).ReadAs<TailnetResource>(HttpStatusCode.OK);
        var key = await Http.CreateAuthKey(tailnetId, reusable: true);
        for (var i = 0; i < active + pending; i++)
        {
            await using var stream = await RawControlStream.OpenAsync(coordinator.Control);
            using var machine = Curve25519PrivateKey.Generate();
            using var node = Curve25519PrivateKey.Generate();
            await stream.Handshake(machine);
            var answer = i < active
                ? await stream.Register(machine, node, authKey: key.Key, hostname: $"web{i}")
                : await stream.Register(machine, node, tailnet: name, hostname: $"waiting{i}");
            Assert.Equal(i < active ? RegisterResult.Types.Status.Authorized : RegisterResult.Types.Status.PendingApproval, answer.Status);
        }
        return tailnetId;
    }

    private async Task<DeviceListResource> Page(string tailnetId, string query) =>
        await (await Http.GetAsync($"/api/v1/tailnets/{tailnetId}/devices?{query}")).ReadAs<DeviceListResource>(HttpStatusCode.OK);

    [Fact]
    public async Task Pages_followed_by_their_cursor_list_every_device_once_in_id_order_as_the_whole_listing_does()
    {
        var tailnetId = await TailnetWithDevices(active: 5, pending: 2);

        var whole = await Http.ListDevices(tailnetId);
        var pages = new List<DeviceListResource> { await Page(tailnetId, "limit=3") };
        while (pages[^1].NextCursor is { } cursor)
            pages.Add(await Page(tailnetId, $"limit=3&cursor={cursor}"));

        Assert.Equal(7, whole.Devices.Count);
        Assert.Null(whole.NextCursor);
        Assert.Equal([3, 3, 1], pages.Select(p => p.Devices.Count));
        Assert.Equal(whole.Devices.Select(d => d.Id).Order(StringComparer.Ordinal), pages.SelectMany(p => p.Devices).Select(d => d.Id));
        Assert.Equal(pages[0].Devices[^1].Id, pages[0].NextCursor);
    }

    [Fact]
    public async Task A_status_lists_the_devices_in_that_state_whole_or_in_pages()
    {
        var tailnetId = await TailnetWithDevices(active: 3, pending: 2);

        var pending = await Page(tailnetId, "status=pending");
        var active = await Page(tailnetId, "status=active&limit=2");

        Assert.Equal(2, pending.Devices.Count);
        Assert.All(pending.Devices, d => Assert.Equal("pending", d.Status));
        Assert.Equal(2, active.Devices.Count);
        Assert.All(active.Devices, d => Assert.Equal("active", d.Status));
        var rest = await Page(tailnetId, $"status=active&limit=2&cursor={active.NextCursor}");
        Assert.Equal("active", Assert.Single(rest.Devices).Status);
        Assert.Null(rest.NextCursor);
    }

    [Theory]
    [InlineData("limit=0", "limit must be a whole number from 1 to 1000")]
    [InlineData("limit=1001", "limit must be a whole number from 1 to 1000")]
    [InlineData("limit=-1", "limit must be a whole number from 1 to 1000")]
    [InlineData("limit=ten", "limit must be a whole number from 1 to 1000")]
    [InlineData("limit=5&cursor=web1", "cursor must be the nextCursor of the page before")]
    [InlineData("limit=5&cursor=dev_a%2Fb", "cursor must be the nextCursor of the page before")]
    [InlineData("cursor=dev_abc", "cursor pages through a listing: give limit too")]
    [InlineData("status=offline", "status must be pending or active")]
    public async Task A_bad_paging_question_is_400_with_what_was_wrong(string query, string reason)
    {
        var tailnetId = (await Http.CreateTailnet($"badpage-{Guid.NewGuid():N}"[..20])).Id;

        var error = await (await Http.GetAsync($"/api/v1/tailnets/{tailnetId}/devices?{query}")).ReadError(HttpStatusCode.BadRequest);

        Assert.Equal(ApiErrorCodes.InvalidRequest, error.Code);
        Assert.Contains(reason, error.Message);
    }

    [Fact]
    public async Task A_device_is_found_by_its_name_and_an_unknown_name_is_404()
    {
        var tailnetId = await TailnetWithDevices(active: 2, pending: 0);
        var named = (await Http.ListDevices(tailnetId)).Devices.Single(d => d.Name == "web1");

        Assert.Equal(named.Id, (await Http.GetDevice(tailnetId, "web1")).Id);
        var missing = await (await Http.GetAsync($"/api/v1/tailnets/{tailnetId}/devices/web9")).ReadError(HttpStatusCode.NotFound);
        Assert.Contains("'web9' does not exist", missing.Message);
    }
}
