using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;

namespace Weft.NodeAgent.Control;

/// <summary>A connection attempt failed; <see cref="Code"/> is a <see cref="ControlErrorCodes"/> value or a transport reason.</summary>
public sealed class ControlConnectException(string code, string message, bool permanent, TimeSpan? retryAfter = null) : Exception(message)
{
    public string Code { get; } = code;

    /// <summary>Retrying the same coordinator will not help (for example its key changed).</summary>
    public bool Permanent { get; } = permanent;

    /// <summary>How long the coordinator asked the agent to wait before trying it again (it is busy or going away).</summary>
    public TimeSpan? RetryAfter { get; } = retryAfter;
}

/// <summary>
/// One authenticated stream to one coordinator: <c>GetServerKey</c>, then <c>Connect</c> with the
/// Noise IK handshake (machine key → coordinator key), then sealed frames both ways. Messages to
/// send are queued and written by one loop; received frames are opened in order.
/// </summary>
public sealed class ControlConnection : IAsyncDisposable
{
    private const int SendQueueLength = 256;
    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(15);

    private readonly GrpcChannel? _ownedChannel;
    private readonly AsyncDuplexStreamingCall<Frame, Frame> _call;
    private readonly ControlTransport _transport;
    private readonly Channel<ClientMessage> _outbound = Channel.CreateBounded<ClientMessage>(new BoundedChannelOptions(SendQueueLength) { SingleReader = true });
    private readonly CancellationTokenSource _closing = new();
    private readonly Task _writer;

    private ControlConnection(Uri url, GrpcChannel? ownedChannel, AsyncDuplexStreamingCall<Frame, Frame> call, ControlTransport transport, Curve25519PublicKey coordinatorKey)
    {
        Url = url;
        _ownedChannel = ownedChannel;
        _call = call;
        _transport = transport;
        CoordinatorKey = coordinatorKey;
        _writer = WriteLoop();
    }

    public Uri Url { get; }

    public Curve25519PublicKey CoordinatorKey { get; }

    /// <summary>A gRPC channel for a coordinator URL (HTTP/2 without TLS: the Noise channel inside protects the stream).</summary>
    public static GrpcChannel CreateChannel(Uri url) => GrpcChannel.ForAddress(url, new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            KeepAlivePingDelay = TimeSpan.FromSeconds(30),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(20),
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            ConnectCallback = ConnectBypassingTheTunnel,
        },
        MaxReceiveMessageSize = ControlProtocol.MaxFrameSize + 1024,
        MaxSendMessageSize = ControlProtocol.MaxFrameSize + 1024,
    });

    /// <summary>
    /// The control stream reaches the coordinator by the machine's own routes, never through an exit
    /// node: its socket carries the bypass mark. One socket per address family, each address in turn
    /// (a machine without IPv6 cannot even open an IPv6 socket).
    /// </summary>
    private static async ValueTask<Stream> ConnectBypassingTheTunnel(SocketsHttpConnectionContext context, CancellationToken cancel)
    {
        var host = context.DnsEndPoint.Host;
        var addresses = IPAddress.TryParse(host.Trim('[', ']'), out var literal) ? [literal] : await System.Net.Dns.GetHostAddressesAsync(host, cancel);
        SocketException? last = null;
        foreach (var address in addresses)
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                Net.PolicyRouting.MarkBypass(socket);
                await socket.ConnectAsync(new IPEndPoint(address, context.DnsEndPoint.Port), cancel);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                last = e;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
        throw last ?? new SocketException((int)SocketError.HostNotFound);
    }

    /// <summary>How long a coordinator that speaks another protocol version is left before it is tried again.</summary>
    public static readonly TimeSpan VersionMismatchRetry = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Opens a stream. <paramref name="pinnedKey"/>, when known, must match the coordinator's key; a
    /// different key is refused permanently (a coordinator does not change keys; an impostor might).
    /// <paramref name="sharedChannel"/> lets many agents multiplex one HTTP/2 connection; otherwise the
    /// connection owns a channel of its own.
    /// </summary>
    public static async Task<ControlConnection> OpenAsync(
        Uri url, Curve25519PrivateKey machineKey, Curve25519PublicKey? pinnedKey, TimeProvider clock, GrpcChannel? sharedChannel, CancellationToken cancel)
    {
        var owned = sharedChannel is null ? CreateChannel(url) : null;
        var channel = sharedChannel ?? owned!;
        AsyncDuplexStreamingCall<Frame, Frame>? call = null;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        timeout.CancelAfter(HandshakeTimeout);
        try
        {
            var client = new Coordinator.CoordinatorClient(channel);
            var serverKey = await client.GetServerKeyAsync(new ServerKeyRequest(), cancellationToken: timeout.Token);
            if (serverKey.ProtocolVersion != ControlProtocol.Version)
                // Not permanent: in a rolling upgrade (or a rollback) the other coordinators of the list may speak
                // this agent's version, and this one may again later. Taken for good, the first coordinator of
                // another version an agent dialled would have stopped it until a person ran `up`.
                throw new ControlConnectException(ControlErrorCodes.InvalidRequest,
                    $"{url} speaks control protocol v{serverKey.ProtocolVersion}; this agent speaks v{ControlProtocol.Version}: trying the other coordinators, and this one again in {VersionMismatchRetry.TotalSeconds:0} s",
                    permanent: false, retryAfter: VersionMismatchRetry);
            if (serverKey.PublicKey.Length != Curve25519PublicKey.Size)
                throw new ControlConnectException(ControlErrorCodes.HandshakeMalformed, $"{url} sent a {serverKey.PublicKey.Length}-byte key", permanent: false);
            var coordinatorKey = new Curve25519PublicKey(serverKey.PublicKey.Span);
            if (pinnedKey is { } pinned && pinned != coordinatorKey)
                // Not permanent: an impostor (or a coordinator restored from the wrong backup) may stand
                // where the real one was; the agent refuses it, and keeps trying until the real one answers.
                throw new ControlConnectException(ControlErrorCodes.CoordinatorKeyChanged,
                    $"{url} presents coordinator key {coordinatorKey.ToHex()}, not the pinned {pinned.ToHex()}; refusing it and trying again (to trust a new coordinator, delete the agent state)",
                    permanent: false);

            using var initiator = ControlInitiator.Begin(machineKey, coordinatorKey, clock.GetUtcNow());
            call = client.Connect(cancellationToken: cancel);
            await call.RequestStream.WriteAsync(new Frame { Data = ByteString.CopyFrom(initiator.Initiation) }, timeout.Token);
            if (!await call.ResponseStream.MoveNext(timeout.Token))
                throw new ControlConnectException(ControlErrorCodes.Unavailable, $"{url} closed the stream during the handshake", permanent: false);
            var transport = initiator.Complete(call.ResponseStream.Current.Data.Span)
                ?? throw new ControlConnectException(ControlErrorCodes.HandshakeUnauthenticated, $"{url}'s handshake response did not authenticate", permanent: false);
            return new ControlConnection(url, owned, call, transport, coordinatorKey);
        }
        catch (Exception e) when (e is not ControlConnectException)
        {
            call?.Dispose();
            owned?.Dispose();
            throw e switch
            {
                RpcException { StatusCode: StatusCode.Unauthenticated } rpc =>
                    new ControlConnectException(CodeOf(rpc.Status.Detail), $"{url} refused the handshake: {rpc.Status.Detail}", permanent: false),
                RpcException { StatusCode: StatusCode.Unavailable } rpc when RetryAfterOf(rpc) is { } wait =>
                    new ControlConnectException(CodeOf(rpc.Status.Detail), $"{url}: {rpc.Status.Detail}", permanent: false, wait),
                RpcException rpc => new ControlConnectException(ControlErrorCodes.Unavailable, $"{url}: {rpc.Status.StatusCode} {rpc.Status.Detail}", permanent: false),
                OperationCanceledException when !cancel.IsCancellationRequested =>
                    new ControlConnectException(ControlErrorCodes.Unavailable, $"{url} did not complete the handshake in {HandshakeTimeout.TotalSeconds:0} s", permanent: false),
                _ => e,
            };
        }
        catch
        {
            call?.Dispose();
            owned?.Dispose();
            throw;
        }
    }

    /// <summary>Queues a message; false when the connection is closing or hopelessly behind.</summary>
    public bool Send(ClientMessage message) => _outbound.Writer.TryWrite(message);

    /// <summary>The coordinator's messages in order. Ends when the stream ends; throws if a frame is forged or garbled.</summary>
    public async IAsyncEnumerable<ServerMessage> ReadAllAsync([EnumeratorCancellation] CancellationToken cancel)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancel, _closing.Token);
        while (await _call.ResponseStream.MoveNext(linked.Token))
        {
            var plaintext = _transport.Open(_call.ResponseStream.Current.Data.Span)
                ?? throw new ControlConnectException(ControlErrorCodes.FrameUnauthenticated, $"a frame from {Url} did not authenticate", permanent: false);
            ServerMessage message;
            try
            {
                message = ServerMessage.Parser.ParseFrom(plaintext);
            }
            catch (InvalidProtocolBufferException e)
            {
                throw new ControlConnectException(ControlErrorCodes.FrameMalformed, $"a frame from {Url} is not a ServerMessage: {e.Message}", permanent: false);
            }
            yield return message;
        }
    }

    private async Task WriteLoop()
    {
        try
        {
            await foreach (var message in _outbound.Reader.ReadAllAsync(_closing.Token))
                await _call.RequestStream.WriteAsync(new Frame { Data = ByteString.CopyFrom(_transport.Seal(message)) }, _closing.Token);
            await _call.RequestStream.CompleteAsync();
        }
        catch (Exception e) when (e is OperationCanceledException or RpcException or IOException or InvalidOperationException)
        {
            // The stream is gone; the reader reports it.
        }
    }

    /// <summary>The coordinator's retry-after trailer (milliseconds), when it turned the agent away for now.</summary>
    private static TimeSpan? RetryAfterOf(RpcException rpc) =>
        rpc.Trailers.GetValue(ControlProtocol.RetryAfterTrailer) is { } text && uint.TryParse(text, out var ms) ? TimeSpan.FromMilliseconds(ms) : null;

    private static string CodeOf(string detail)
    {
        var colon = detail.IndexOf(':');
        return colon > 0 ? detail[..colon] : ControlErrorCodes.HandshakeUnauthenticated;
    }

    public async ValueTask DisposeAsync()
    {
        _outbound.Writer.TryComplete();
        await _closing.CancelAsync();
        try
        {
            await _writer;
        }
        catch (OperationCanceledException)
        {
        }
        _call.Dispose();
        _transport.Dispose();
        _ownedChannel?.Dispose();
        _closing.Dispose();
    }
}
