using System.Net;

namespace Weft.Relay;

/// <summary>
/// What a listener holds at once (connections, pending handshakes), counted in all and per source
/// address against two limits: anything that can reach a port could otherwise open connections faster
/// than they go and run the process out of file descriptors. An IPv4-mapped address counts as its IPv4
/// one, and an IPv6 address as its /64 (<see cref="SenderOf"/>). Thread-safe.
/// </summary>
public sealed class HeldPerAddress(int maximum, int maximumPerAddress)
{
    /// <summary>Which limit refused an arrival (<see cref="None"/>: it was counted).</summary>
    public enum Refusal
    {
        None,
        Total,
        Address,
    }

    private readonly Dictionary<IPAddress, int> _perAddress = [];
    private int _total;

    public int Maximum { get; } = maximum > 0 ? maximum : throw new ArgumentOutOfRangeException(nameof(maximum), maximum, "the maximum must be at least 1");

    public int MaximumPerAddress { get; } = maximumPerAddress > 0 ? maximumPerAddress
        : throw new ArgumentOutOfRangeException(nameof(maximumPerAddress), maximumPerAddress, "the maximum per address must be at least 1");

    /// <summary>One source, however it reached a dual-stack socket: an IPv4-mapped address counts as its IPv4 one.</summary>
    public static IPAddress SourceOf(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    /// <summary>
    /// Whose allowance an address counts against (these limits, and every per-address rate): an IPv4 address
    /// its own, an IPv6 address its /64. A host is given a whole /64 and may take a new address from it for each
    /// connection, so per /128 it would escape every per-address limit.
    /// </summary>
    public static IPAddress SenderOf(IPAddress address)
    {
        var source = SourceOf(address);
        if (source.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6) return source;
        Span<byte> bytes = stackalloc byte[16];
        source.TryWriteBytes(bytes, out _);
        // Through a NAT64 (the well-known prefix 64:ff9b::/96) every IPv4 host shares one /64: each counts as its IPv4 address.
        if (bytes[..12].SequenceEqual(Nat64Prefix)) return new IPAddress(bytes[12..]);
        bytes[8..].Clear();
        return new IPAddress(bytes);
    }

    private static ReadOnlySpan<byte> Nat64Prefix => [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0];

    /// <summary>Counts one more from <paramref name="source"/>, unless a limit is reached (then nothing is counted).</summary>
    public Refusal TryEnter(IPAddress source)
    {
        source = SenderOf(source);
        lock (_perAddress)
        {
            if (_total >= Maximum) return Refusal.Total;
            var fromSource = _perAddress.GetValueOrDefault(source);
            if (fromSource >= MaximumPerAddress) return Refusal.Address;
            _perAddress[source] = fromSource + 1;
            _total++;
            return Refusal.None;
        }
    }

    /// <summary>One that <see cref="TryEnter"/> counted has gone, however it went.</summary>
    public void Leave(IPAddress source)
    {
        source = SenderOf(source);
        lock (_perAddress)
        {
            if (!_perAddress.TryGetValue(source, out var fromSource)) return;
            if (fromSource <= 1) _perAddress.Remove(source);
            else _perAddress[source] = fromSource - 1;
            _total--;
        }
    }

    public int Count
    {
        get
        {
            lock (_perAddress) return _total;
        }
    }
}
