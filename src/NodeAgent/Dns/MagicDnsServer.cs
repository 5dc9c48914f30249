using System.Net;
using System.Net.Sockets;

namespace Weft.NodeAgent.Dns;

/// <summary>
/// MagicDNS on the wire: UDP sockets on the agent's tailnet addresses (port 53 in production), one
/// receive loop each, answering with <see cref="MagicDnsResolver"/> from whatever <see cref="Names"/>
/// holds at that moment. A bad packet or a failed send costs that packet only; the loops stop on Dispose.
/// Names outside the tailnet go to <see cref="Upstreams"/> when there are any (the resolvers the
/// system had before MagicDNS took over), and the answer comes back as the upstream gave it; with no
/// upstream they are refused.
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
    /// <summary>How long one upstream has to answer before the next is asked (the C library waits 5 s in all).</summary>
    private static readonly TimeSpan UpstreamTimeout = TimeSpan.FromSeconds(2);
    /// <summary>Forwarded queries in flight at once; beyond that a query is answered SERVFAIL at once rather than queued.</summary>
    private const int MaxForwarding = 256;

    private readonly Socket[] _sockets;
    private readonly Task[] _loops;
    private readonly CancellationTokenSource _stopping = new();
    private DnsNameTable _names;
    private IReadOnlyList<IPEndPoint> _upstreams = [];
    private readonly SemaphoreSlim _forwarding = new(MaxForwarding, MaxForwarding);
    private long _answered, _refused, _malformed, _unsupported, _failed, _forwarded;
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

    /// <summary>Where names outside the tailnet are forwarded, tried in order; empty refuses them.</summary>
    public IReadOnlyList<IPEndPoint> Upstreams
    {
        get => Volatile.Read(ref _upstreams);
        set => Volatile.Write(ref _upstreams, value ?? throw new ArgumentNullException(nameof(value)));
    }

    /// <summary>Queries forwarded and answered by an upstream.</summary>
    public long Forwarded => Interlocked.Read(ref _forwarded);

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
            if (outcome == MagicDnsOutcome.Refused && Upstreams is { Count: > 0 } upstreams)
            {
                var from = (IPEndPoint)new IPEndPoint(socket.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0).Create(client);
                _ = ForwardAsync(socket, query.ToArray(), from, upstreams);
                return;
            }
            Interlocked.Increment(ref CounterFor(outcome));
            if (length > 0) socket.SendTo(response[..length], SocketFlags.None, client);
        }
        catch (Exception)
        {
            // A socket closed under the send by Dispose is no failure.
            if (!_stopping.IsCancellationRequested) Interlocked.Increment(ref _failed);
        }
    }

    /// <summary>
    /// Asks each upstream in turn (a fresh socket each, connected, so only that upstream's answer is
    /// read) and relays the first answer with the query's ID; SERVFAIL when none answers in time.
    /// </summary>
    private async Task ForwardAsync(Socket socket, byte[] query, IPEndPoint client, IReadOnlyList<IPEndPoint> upstreams)
    {
        var id = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(query);
        var answer = new byte[DnsMessage.MaxUdpPayload];
        var answered = 0;
        if (_forwarding.Wait(0))
        {
            try
            {
                foreach (var upstream in upstreams)
                {
                    using var udp = new Socket(upstream.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
                    timeout.CancelAfter(UpstreamTimeout);
                    try
                    {
                        await udp.ConnectAsync(upstream, timeout.Token);
                        await udp.SendAsync(query, SocketFlags.None, timeout.Token);
                        while (answered == 0)
                        {
                            var length = await udp.ReceiveAsync(answer, SocketFlags.None, timeout.Token);
                            if (length >= DnsMessage.HeaderLength && System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(answer) == id) answered = length;
                        }
                        break;
                    }
                    catch (Exception e) when (e is OperationCanceledException or SocketException)
                    {
                        if (_stopping.IsCancellationRequested) return;
                    }
                }
            }
            finally
            {
                _forwarding.Release();
            }
        }
        try
        {
            if (answered > 0)
            {
                Interlocked.Increment(ref _forwarded);
            }
            else
            {
                Interlocked.Increment(ref _failed);
                var flags = (ushort)(DnsMessage.FlagResponse | (System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(query.AsSpan(2)) & (DnsMessage.OpcodeMask | DnsMessage.FlagRecursionDesired)) | (ushort)DnsResponseCode.ServerFailure);
                DnsMessage.WriteHeader(answer, id, flags, questions: 0, answers: 0, additionals: 0);
                answered = DnsMessage.HeaderLength;
            }
            await socket.SendToAsync(answer.AsMemory(0, answered), SocketFlags.None, client, _stopping.Token);
        }
        catch (Exception) when (_stopping.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            Interlocked.Increment(ref _failed);
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
