using System.Net;
using Microsoft.AspNetCore.Connections;
using Weft.Relay;

namespace Weft.Cluster.Hosting;

/// <summary>
/// How many TCP connections one listener holds, in all and from one address. Bound from
/// <c>Weft:Api:Connections</c> and <c>Weft:Control:Connections</c>. Without them, idle connections from
/// one host could use up the process's file descriptors and take the node down.
/// </summary>
public sealed class ConnectionLimitSettings
{
    /// <summary>Connections the listener holds at once; more are closed on arrival.</summary>
    public int MaxConnections { get; set; }

    /// <summary>
    /// Connections from one IP address at once. Generous on the control port, where many devices may
    /// share one NAT address.
    /// </summary>
    public int MaxConnectionsPerAddress { get; set; }

    public static ConnectionLimitSettings ForControl() => new() { MaxConnections = 20_000, MaxConnectionsPerAddress = 2_000 };

    public static ConnectionLimitSettings ForApi() => new() { MaxConnections = 1_000, MaxConnectionsPerAddress = 100 };

    public IEnumerable<string> Problems(string prefix)
    {
        if (MaxConnections < 1) yield return $"{prefix}:MaxConnections must be at least 1, not {MaxConnections}";
        if (MaxConnectionsPerAddress < 1 || MaxConnectionsPerAddress > MaxConnections)
            yield return $"{prefix}:MaxConnectionsPerAddress must be between 1 and MaxConnections ({MaxConnections}), not {MaxConnectionsPerAddress}";
    }
}

/// <summary>
/// Kestrel connection middleware for one listener: admits a connection while the listener and its
/// source address are under their limits, and closes it at once otherwise (before TLS, HTTP or gRPC
/// spend anything on it). Refusals are counted and logged at most every 10 s.
/// </summary>
public sealed class ConnectionLimiter(string listener, ConnectionLimitSettings limits, ILogger log)
{
    private readonly HeldPerAddress _held = new(limits.MaxConnections, limits.MaxConnectionsPerAddress);
    private readonly Control.LogThrottle _refusals = new(TimeSpan.FromSeconds(10));

    public async Task Run(ConnectionContext connection, ConnectionDelegate next)
    {
        var address = HeldPerAddress.SourceOf((connection.RemoteEndPoint as IPEndPoint)?.Address ?? IPAddress.None);
        if (_held.TryEnter(address) is not HeldPerAddress.Refusal.None and var refusal)
        {
            var why = refusal == HeldPerAddress.Refusal.Total
                ? $"the listener holds its maximum of {limits.MaxConnections} connections"
                : $"that address holds its maximum of {limits.MaxConnectionsPerAddress} connections";
            if (_refusals.ShouldLog(DateTimeOffset.UtcNow, out var others))
                log.LogWarning("{Listener} listener refused a connection from {Address}: {Why} ({Others} more refused since the last such line)",
                    listener, address, why, others);
            connection.Abort(new ConnectionAbortedException(why));
            return;
        }
        try
        {
            await next(connection);
        }
        finally
        {
            _held.Leave(address);
        }
    }
}
