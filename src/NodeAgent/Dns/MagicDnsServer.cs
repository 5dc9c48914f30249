using System.Net;
using System.Net.Sockets;

namespace Weft.NodeAgent.Dns;

/// <summary>
/// MagicDNS on the wire: UDP sockets on the agent's tailnet addresses (port 53 in production), one
/// receive loop each, answering with <see cref="MagicDnsResolver"/> from whatever <see cref="Names"/>
/// holds at that moment. A bad packet or a failed send costs that packet only; the loops stop on Dispose.
/// </summary>
/// <remarks>
/// UDP only: every answer fits in 512 bytes unless a device has dozens of addresses, and clients
/// (dig included) fall back to TCP only when an answer comes back truncated. The receive and send
/// paths reuse one buffer and one peer address per socket, so a query allocates nothing.
/// </remarks>
public sealed class MagicDnsServer : IDisposable
{
    /// <summary>The largest UDP datagram, so no query is ever cut short by the buffer.</summary>
    private const int ReceiveBufferBytes = 65535;
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(5);

    private readonly Socket[] _sockets;
    private readonly Task[] _loops;
    private readonly CancellationTokenSource _stopping = new();
    private DnsNameTable _names;
    private long _answered, _refused, _malformed, _unsupported, _failed;
    private int _disposed;

    /// <summary>Binds every endpoint (port 0 picks a free port) and starts answering.</summary>
    /// <exception cref="SocketException">An endpoint could not be bound; nothing is left open.</exception>
    public MagicDnsServer(IEnumerable<IPEndPoint> endpoints, DnsNameTable names)
    {
        ArgumentNullException.ThrowIfNull(names);
        _names = names;
        var sockets = new List<Socket>();
        try
        {
            foreach (var endpoint in endpoints) sockets.Add(Bind(endpoint));
        }
        catch
        {
            foreach (var socket in sockets) socket.Dispose();
            throw;
        }
        _sockets = [.. sockets];
        LocalEndpoints = [.. _sockets.Select(s => (IPEndPoint)s.LocalEndPoint!)];
        _loops = [.. _sockets.Select(socket => Task.Run(() => ServeAsync(socket)))];
    }

    /// <summary>The addresses actually bound, in the order given (with the ports chosen for port 0).</summary>
    public IReadOnlyList<IPEndPoint> LocalEndpoints { get; }

    /// <summary>The names answered from; the agent swaps in a new table when its netmap changes, and the next query sees it.</summary>
    public DnsNameTable Names
    {
        get => Volatile.Read(ref _names);
        set => Volatile.Write(ref _names, value ?? throw new ArgumentNullException(nameof(value)));
    }

    /// <summary>Authoritative answers sent: records, NODATA or NXDOMAIN.</summary>
    public long Answered => Interlocked.Read(ref _answered);
    /// <summary>Queries refused: names or classes we do not serve.</summary>
    public long Refused => Interlocked.Read(ref _refused);
    /// <summary>Datagrams that were not well-formed queries: answered FORMERR, or dropped when there was no header to answer.</summary>
    public long Malformed => Interlocked.Read(ref _malformed);
    /// <summary>Queries answered NOTIMP (an opcode other than QUERY) or BADVERS (an EDNS version above 0).</summary>
    public long Unsupported => Interlocked.Read(ref _unsupported);
    /// <summary>Packets whose handling failed (a send the kernel refused, say): counted so they show, never fatal to the loop.</summary>
    public long Failed => Interlocked.Read(ref _failed);

    private static Socket Bind(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            // An IPv6 socket takes IPv6 only, so [::]:53 and 0.0.0.0:53 can both be bound.
            if (endpoint.AddressFamily == AddressFamily.InterNetworkV6) socket.DualMode = false;
            socket.Bind(endpoint);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        var query = new byte[ReceiveBufferBytes];
        var response = new byte[DnsMessage.MaxUdpPayload];
        var client = new SocketAddress(socket.AddressFamily);
        var stop = _stopping.Token;
        while (!stop.IsCancellationRequested)
        {
            int received;
            try
            {
                received = await socket.ReceiveFromAsync(query, SocketFlags.None, client, stop);
            }
            catch (Exception e) when (stop.IsCancellationRequested || e is ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                // A transient receive error (an ICMP error surfacing, say): the socket itself is still good.
                Interlocked.Increment(ref _failed);
                continue;
            }
            Serve(socket, query.AsSpan(0, received), response, client);
        }
    }

    private void Serve(Socket socket, ReadOnlySpan<byte> query, Span<byte> response, SocketAddress client)
    {
        try
        {
            var length = MagicDnsResolver.Answer(query, response, Names, out var outcome);
            Interlocked.Increment(ref CounterFor(outcome));
            if (length > 0) socket.SendTo(response[..length], SocketFlags.None, client);
        }
        catch (Exception)
        {
            // A socket closed under the send by Dispose is no failure.
            if (!_stopping.IsCancellationRequested) Interlocked.Increment(ref _failed);
        }
    }

    private ref long CounterFor(MagicDnsOutcome outcome)
    {
        switch (outcome)
        {
            case MagicDnsOutcome.Answered: return ref _answered;
            case MagicDnsOutcome.Refused: return ref _refused;
            case MagicDnsOutcome.Unsupported: return ref _unsupported;
            default: return ref _malformed;
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stopping.Cancel();
        foreach (var socket in _sockets) socket.Dispose();
        try
        {
            Task.WaitAll(_loops, StopTimeout);
        }
        catch (AggregateException)
        {
            // The loops catch their own errors; anything left is of no use to the caller disposing us.
        }
        _stopping.Dispose();
    }
}
