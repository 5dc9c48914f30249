using System.Net;
using Weft.Contracts.Control;

namespace Weft.NodeAgent.Control;

/// <summary>A netmap node's tailnet addresses as IP addresses (the wire carries text, with or without a prefix length); unparseable entries are skipped.</summary>
public static class NodeAddresses
{
    public static IEnumerable<IPAddress> Of(Node node)
    {
        foreach (var text in node.Addresses)
            if (IPAddress.TryParse(text.Split('/')[0], out var address)) yield return address;
    }
}
