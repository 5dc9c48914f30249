using Google.Protobuf;

namespace Weft.Cluster.Tailnets;

/// <summary>
/// Each device's node as its peers receive it, already encoded, kept from one full map to the next.
/// A full map in a tailnet of 1,000 holds 999 peers, and every device that joins or reconnects gets
/// one: built from the state each time, a join storm builds and serialises N² nodes. A device's
/// encoding is made again only when something it is made from changed: its entry (a new instance on
/// every change), whether it is online, the DNS suffix, or its user's name. Routers under a policy
/// with <c>via</c> differ per viewer and are never kept (<see cref="NetMapBuilder.DiffersPerViewer"/>).
/// <para>
/// Soft state of one tailnet incarnation: a new incarnation starts empty and encodes on demand.
/// </para>
/// </summary>
public sealed class EncodedPeerNodes
{
    private readonly record struct Encoded(DeviceEntry Device, bool Online, string DnsSuffix, string User, ByteString Node);

    private readonly Dictionary<string, Encoded> _byDevice = new(StringComparer.Ordinal);

    public int Count => _byDevice.Count;

    /// <summary>The encoded <see cref="NetMapBuilder.NodeFor"/> of <paramref name="device"/> as <paramref name="tailnet"/> holds it now.</summary>
    public ByteString Of(TailnetState tailnet, DeviceEntry device, bool online)
    {
        var suffix = tailnet.Settings.DnsSuffix;
        var user = NetMapBuilder.UserNameOf(tailnet, device);
        if (_byDevice.TryGetValue(device.DeviceId, out var held) && ReferenceEquals(held.Device, device) && held.Online == online
            && held.DnsSuffix == suffix && held.User == user)
            return held.Node;
        var node = NetMapBuilder.NodeFor(tailnet, device, online).ToByteString();
        _byDevice[device.DeviceId] = new Encoded(device, online, suffix, user, node);
        return node;
    }

    /// <summary>Forgets the devices that left the tailnet.</summary>
    public void Prune(TailnetState tailnet)
    {
        foreach (var id in _byDevice.Keys.Where(id => !tailnet.Devices.ContainsKey(id)).ToList()) _byDevice.Remove(id);
    }
}
