using System.Collections.Immutable;

namespace Weft.Cluster.Tailnets;

/// <summary>
/// Cuts a tailnet's devices into pages in id order (<see cref="ListDevices"/>). A page ends at its
/// limit or when its answer would pass its byte budget, whichever comes first: half the remote frame
/// limit (<c>akka.remote.weft-tls.maximum-frame-size</c>, 4 MiB as shipped), so a tailnet of any size
/// is listed across nodes without an answer that the remote transport would refuse.
/// </summary>
public static class DevicePages
{
    private const string FrameLimitSetting = "akka.remote.weft-tls.maximum-frame-size";

    /// <summary>How much of an answer one page may take with the shipped frame limit.</summary>
    public const int DefaultWireBudgetBytes = 2 * 1024 * 1024;

    /// <summary>The most devices a page holds.</summary>
    public const int MaxLimit = 1000;

    /// <summary>Half the frame limit this node's remote transport is configured with.</summary>
    public static int WireBudgetOf(Akka.Configuration.Config config) =>
        config.GetByteSize(FrameLimitSetting, null) is { } frame ? (int)Math.Clamp(frame / 2, 16 * 1024, int.MaxValue) : DefaultWireBudgetBytes;

    public static DeviceList Page(ImmutableSortedDictionary<string, DeviceEntry> devices, ListDevices ask, Func<string, bool> isOnline,
        int wireBudgetBytes = DefaultWireBudgetBytes)
    {
        var page = new List<DeviceInfo>();
        var bytes = 0L;
        var after = ask.After;
        foreach (var (id, device) in devices)
        {
            if (after is not null && devices.KeyComparer.Compare(id, after) <= 0) continue;
            if (ask.Status is { } status && device.Status != status) continue;
            var size = WireBytesAtMost(device);
            if (ask.Limit > 0 && page.Count > 0 && (page.Count >= ask.Limit || bytes + size > wireBudgetBytes))
                return new DeviceList(page, page[^1].Device.DeviceId);
            page.Add(new DeviceInfo(device, isOnline(id)));
            bytes += size;
        }
        return new DeviceList(page);
    }

    /// <summary>
    /// The page's devices in <paramref name="status"/> (all when null), filtered again where they arrive: a node from
    /// before paging answers every device, whatever state was asked (during a rolling upgrade).
    /// </summary>
    public static IEnumerable<DeviceInfo> InState(this DeviceList page, DeviceStatus? status) =>
        status is null ? page.Devices : page.Devices.Where(d => d.Device.Status == status);

    /// <summary>
    /// At least what one device weighs in a page between nodes (JSON): a fixed allowance for the field
    /// names, numbers and times, and each character of text as the serializer writes it (six bytes for
    /// one it escapes).
    /// </summary>
    public static int WireBytesAtMost(DeviceEntry d) =>
        1536 + Text(d.DeviceId) + Text(d.MachineKey) + Text(d.NodeKey) + Text(d.DiscoKey) + Text(d.Name) + Text(d.Hostname) + Text(d.Os)
        + Text(d.UserId) + Text(d.Ipv4) + Text(d.Ipv6) + Text(d.AuthKeyId) + Text(d.AgentVersion) + Text(d.RegisteredFrom)
        + Text(d.Tags) + Text(d.Endpoints) + Text(d.AdvertisedRoutes) + Text(d.ApprovedRoutes);

    private static int Text(string? text)
    {
        var bytes = 0;
        foreach (var c in text ?? "")
            bytes += c is >= ' ' and <= '~' and not ('"' or '\\' or '<' or '>' or '&' or '\'' or '+' or '`') ? 1 : 6;
        return bytes;
    }

    /// <summary>Each item's text plus its quotes and comma.</summary>
    private static int Text(ImmutableArray<string> items) => items.IsDefault ? 0 : items.Sum(item => Text(item) + 3);
}
