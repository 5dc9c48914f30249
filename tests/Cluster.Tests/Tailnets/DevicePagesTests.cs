using System.Collections.Immutable;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>
/// Listing a tailnet's devices a page at a time: every device once, in id order, and no page between
/// nodes near the remote frame limit, however big the devices are.
/// </summary>
public class DevicePagesTests() : Akka.TestKit.Xunit2.TestKit(Support.TestActorSystems.WithWeftSerialization)
{
    private static readonly DateTimeOffset At = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

    private static DeviceEntry Light(int i, DeviceStatus status = DeviceStatus.Active) => new(
        $"dev_{i:D6}", new string('a', 64), new string('b', 64), new string('c', 64), $"host-{i}", $"host-{i}", "linux", "usr_a", [],
        "100.64.0.1", "fd7a:115c:a1e0::1", ["198.18.0.1:41641"], 1, At.AddDays(180), false, status, At, At, "kkkkkkkkkk");

    /// <summary>As big as a device gets: every route and endpoint it may hold, and text that all needs escaping.</summary>
    private static DeviceEntry Heavy(int i)
    {
        var routes = Enumerable.Range(0, DeviceRoutes.MaxRoutes).Select(r => $"fd7a:115c:a1e0:{r:x4}:ffff:ffff:ffff:0/112").ToImmutableArray();
        var endpoints = Enumerable.Range(0, TailnetState.MaxEndpoints).Select(e => $"[2001:db8:ffff:ffff:ffff:ffff:ffff:{e:x4}]:65535").ToImmutableArray();
        return Light(i) with
        {
            Hostname = new string('é', 255),
            Os = "\"<linux>\"",
            Tags = ["tag:" + new string('ü', 60), "tag:server"],
            Endpoints = endpoints,
            AdvertisedRoutes = routes,
            ApprovedRoutes = routes,
            AgentVersion = new string('ß', 64),
            RegisteredFrom = "[2001:db8::1]:443",
        };
    }

    private static ImmutableSortedDictionary<string, DeviceEntry> Tailnet(IEnumerable<DeviceEntry> devices) =>
        devices.ToImmutableSortedDictionary(d => d.DeviceId, d => d, StringComparer.Ordinal);

    private int WireBytes(DeviceList page) => Sys.Serialization.FindSerializerFor(page).ToBinary(page).Length;

    private static List<DeviceList> ReadAll(ImmutableSortedDictionary<string, DeviceEntry> devices, int limit, DeviceStatus? status = null)
    {
        var pages = new List<DeviceList>();
        string? after = null;
        do
        {
            var page = DevicePages.Page(devices, new ListDevices("tn_a") { After = after, Limit = limit, Status = status }, _ => false);
            pages.Add(page);
            after = page.Next;
            Assert.True(pages.Count <= devices.Count + 1, "the pages never end");
        }
        while (after is not null);
        return pages;
    }

    [Fact]
    public void The_bound_on_a_devices_size_holds_for_the_biggest_device_there_can_be()
    {
        var heavy = Heavy(1);
        var alone = WireBytes(new DeviceList([new DeviceInfo(heavy, true)], heavy.DeviceId));
        var empty = WireBytes(new DeviceList([], heavy.DeviceId));

        Assert.True(alone - empty <= DevicePages.WireBytesAtMost(heavy), $"{alone - empty} bytes on the wire, bound {DevicePages.WireBytesAtMost(heavy)}");
        Assert.True(Light(1) is var light && WireBytes(new DeviceList([new DeviceInfo(light, true)])) - WireBytes(new DeviceList([])) <= DevicePages.WireBytesAtMost(light));
    }

    [Fact]
    public void Pages_of_the_biggest_devices_stop_at_the_byte_budget_and_together_hold_every_device_once_in_id_order()
    {
        var devices = Tailnet(Enumerable.Range(0, 600).Select(Heavy));

        var pages = ReadAll(devices, DevicePages.MaxLimit);

        Assert.True(pages.Count > 1, "600 devices of the biggest size fit in one page: the budget did not cut");
        foreach (var page in pages)
            Assert.True(WireBytes(page) <= DevicePages.DefaultWireBudgetBytes, $"a page of {page.Devices.Count} devices is {WireBytes(page)} bytes");
        Assert.Equal(devices.Keys, pages.SelectMany(p => p.Devices).Select(d => d.Device.DeviceId));
        Assert.Null(pages[^1].Next);
    }

    [Fact]
    public void Pages_of_small_devices_hold_the_limit_and_the_last_one_says_it_is_the_last()
    {
        var devices = Tailnet(Enumerable.Range(0, 2_500).Select(i => Light(i)));

        var pages = ReadAll(devices, DevicePages.MaxLimit);

        Assert.Equal([1000, 1000, 500], pages.Select(p => p.Devices.Count));
        Assert.Equal(["dev_000999", "dev_001999", null], pages.Select(p => p.Next));
        Assert.Equal(devices.Keys, pages.SelectMany(p => p.Devices).Select(d => d.Device.DeviceId));
    }

    [Fact]
    public void A_page_that_ends_exactly_at_the_last_device_says_there_is_no_next()
    {
        var pages = ReadAll(Tailnet(Enumerable.Range(0, 6).Select(i => Light(i))), 3);

        Assert.Equal([3, 3], pages.Select(p => p.Devices.Count));
        Assert.Null(pages[^1].Next);
    }

    [Fact]
    public void A_status_filter_pages_through_the_devices_in_that_state_only()
    {
        var devices = Tailnet(Enumerable.Range(0, 10).Select(i => Light(i, i % 3 == 0 ? DeviceStatus.Pending : DeviceStatus.Active)));

        var pending = ReadAll(devices, 2, DeviceStatus.Pending);

        Assert.Equal(["dev_000000", "dev_000003", "dev_000006", "dev_000009"], pending.SelectMany(p => p.Devices).Select(d => d.Device.DeviceId));
        Assert.Equal(2, pending.Count);
    }

    [Fact]
    public void No_limit_answers_every_device_at_once_as_nodes_before_paging_asked()
    {
        var devices = Tailnet(Enumerable.Range(0, 1_500).Select(i => Light(i)));

        var all = DevicePages.Page(devices, new ListDevices("tn_a"), _ => true);

        Assert.Equal(1_500, all.Devices.Count);
        Assert.Null(all.Next);
        Assert.All(all.Devices, d => Assert.True(d.Online));
    }
}
