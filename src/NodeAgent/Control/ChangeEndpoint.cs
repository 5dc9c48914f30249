using System.Net;

namespace Weft.NodeAgent.Control;

/// <summary>
/// A change's sequence number travels in the endpoint it sets, so that a delivery names its change
/// with no side channel (the load tester's simulated agents and the coordinator's propagation canary
/// time propagation with it): 198.18.a.b:p carries 31 bits (16 in the address, 15 in the port above
/// 1024). A node's endpoint at join, 198.19.a.b:41641, carries no change. Both sit in the
/// benchmarking range 198.18.0.0/15, never routed.
/// </summary>
public static class ChangeEndpoint
{
    public const int MaxSequence = int.MaxValue;
    private const int PortBase = 1024;

    public static string For(int sequence)
    {
        if (sequence < 0) throw new ArgumentOutOfRangeException(nameof(sequence));
        var high = sequence >> 15;
        return $"198.18.{high >> 8}.{high & 0xFF}:{PortBase + (sequence & 0x7FFF)}";
    }

    public static string AtJoin(int agentIndex) => $"198.19.{(agentIndex >> 8) & 0xFF}.{agentIndex & 0xFF}:41641";

    /// <summary>The change an endpoint carries, or -1 for any other endpoint (a join endpoint, or one the tester never set).</summary>
    public static int SequenceOf(string endpoint)
    {
        if (!IPEndPoint.TryParse(endpoint, out var parsed) || parsed.Port < PortBase || parsed.Port >= PortBase + 0x8000) return -1;
        Span<byte> bytes = stackalloc byte[16];
        if (!parsed.Address.TryWriteBytes(bytes, out var length) || length != 4 || bytes[0] != 198 || bytes[1] != 18) return -1;
        return (((bytes[2] << 8) | bytes[3]) << 15) | (parsed.Port - PortBase);
    }
}
