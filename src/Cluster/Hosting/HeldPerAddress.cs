using System.Net;

namespace Weft.Cluster.Hosting;

/// <summary>
/// What a listener holds at once (connections, pending handshakes), counted in all and per source
/// address against two limits: anything that can reach a port could otherwise open connections faster
/// than they go and run the process out of file descriptors. An IPv4-mapped address counts as its IPv4
/// one. Thread-safe.
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

    /// <summary>Counts one more from <paramref name="source"/>, unless a limit is reached (then nothing is counted).</summary>
    public Refusal TryEnter(IPAddress source)
    {
        source = SourceOf(source);
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
        source = SourceOf(source);
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
