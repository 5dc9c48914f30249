using System.Net;

namespace Weft.Cluster.Hosting.Remoting;

/// <summary>
/// The inbound TLS handshakes a node has accepted a connection for and not yet finished, counted in all
/// and per source address. Each one holds a socket and a TLS state for up to connection-timeout; without
/// a limit, anything that can reach the cluster port could open connections faster than they time out
/// and run the process (which also serves the agents) out of file descriptors. A healthy peer needs one
/// handshake at a time, and a refused one is dialled again by Akka after retry-gate-closed-for.
/// Thread-safe.
/// </summary>
internal sealed class PendingHandshakes(int maximum, int maximumPerAddress)
{
    private readonly Dictionary<IPAddress, int> _perAddress = [];
    private int _total;

    public int Maximum { get; } = maximum > 0 ? maximum
        : throw new ArgumentOutOfRangeException(nameof(maximum), maximum, "maximum-pending-handshakes must be positive");

    public int MaximumPerAddress { get; } = maximumPerAddress > 0 ? maximumPerAddress
        : throw new ArgumentOutOfRangeException(nameof(maximumPerAddress), maximumPerAddress, "maximum-pending-handshakes-per-address must be positive");

    /// <summary>Counts a handshake from <paramref name="source"/>; false (and nothing counted) when either limit is reached.</summary>
    public bool TryBegin(IPAddress source)
    {
        lock (_perAddress)
        {
            _perAddress.TryGetValue(source, out var fromSource);
            if (_total >= Maximum || fromSource >= MaximumPerAddress) return false;
            _perAddress[source] = fromSource + 1;
            _total++;
            return true;
        }
    }

    /// <summary>The handshake <see cref="TryBegin"/> counted has ended, however it ended.</summary>
    public void End(IPAddress source)
    {
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
