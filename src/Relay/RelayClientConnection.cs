using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using Weft.Contracts.Crypto;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay;

/// <summary>
/// One client connection to a relay, logged in: what the agent's RelayClient actor and a relay's
/// mesh link both use. Sends never block the caller: packets go into a bounded queue (oldest
/// dropped first, disco apart from data) that a writer task drains. Frames are read with
/// <see cref="ReadAsync"/>; pings from the server are answered here.
/// </summary>
public sealed class RelayClientConnection : IAsyncDisposable
{
    public const int DefaultQueueDepth = 256;
    private static readonly TimeSpan LoginTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly RelayFrameReader _reader;
    private readonly RelayOutbox _outbox;
    private readonly CancellationTokenSource _closing = new();
    private readonly Task _writer;
    private long _dropped;

    private RelayClientConnection(Socket socket, Stream stream, RelayFrameReader reader, Curve25519PublicKey serverKey, ServerInfo info, int queueDepth)
    {
        _socket = socket;
        _stream = stream;
        _reader = reader;
        ServerKey = serverKey;
        Info = info;
        _outbox = new RelayOutbox(64, 32, queueDepth, dataDropped: () => Interlocked.Increment(ref _dropped));
        _writer = Task.Run(WriteLoopAsync);
    }

    public Curve25519PublicKey ServerKey { get; }

    public ServerInfo Info { get; }

    private long _lastReadTicks = Environment.TickCount64;

    /// <summary>Milliseconds since anything (a frame, a keepalive, a pong) arrived from the relay.</summary>
    public long SilentMs => Environment.TickCount64 - Interlocked.Read(ref _lastReadTicks);

    /// <summary>Packets dropped because the send queue was full.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    public bool IsClosed => _closing.IsCancellationRequested;

    /// <summary>
    /// Dials the relay, upgrades the connection, and logs in as <paramref name="key"/>'s public key
    /// with <paramref name="info"/> (a ticket, or a mesh key). <paramref name="configureSocket"/>
    /// runs before the connect (the agent marks the socket so that it bypasses the tunnel).
    /// </summary>
    public static async Task<RelayClientConnection> ConnectAsync(RelayNodeAddress address, Curve25519PrivateKey key, ClientInfo info,
        CancellationToken cancel, Action<Socket>? configureSocket = null, int queueDepth = DefaultQueueDepth)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        timeout.CancelAfter(LoginTimeout);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Stream? stream = null;
        try
        {
            configureSocket?.Invoke(socket);
            await socket.ConnectAsync(address.Host, address.Port, timeout.Token);
            stream = new NetworkStream(socket, ownsSocket: false);
            if (address.Tls)
            {
                var tls = new SslStream(stream, leaveInnerStreamOpen: false);
                await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = address.Host,
                    RemoteCertificateValidationCallback = address.InsecureSkipVerify ? (_, _, _, _) => true : null,
                }, timeout.Token);
                stream = tls;
            }
            await UpgradeAsync(stream, address, timeout.Token);
            var reader = new RelayFrameReader(stream);
            var serverKey = await ReadServerKeyAsync(reader, timeout.Token);
            using var box = SealedBox.Between(key, serverKey) ?? throw new RelayProtocolException("bad_server_key", "the relay's key is not a usable Curve25519 key");
            var login = new byte[RelayFrame.KeySize + SealedBox.Overhead + RelayLoginJson.Serialize(info).Length];
            key.PublicKey.CopyTo(login);
            box.Seal(RelayLoginJson.Serialize(info), login.AsSpan(RelayFrame.KeySize));
            await stream.WriteAsync(RelayFrame.Build(RelayFrameType.ClientInfo, login), timeout.Token);
            var serverInfo = await ReadServerInfoAsync(reader, box, timeout.Token);
            return new RelayClientConnection(socket, stream, reader, serverKey, serverInfo, queueDepth);
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
            Close(socket, stream);
            throw new IOException($"the relay at {address} did not complete the login within {LoginTimeout.TotalSeconds:0} s");
        }
        catch
        {
            Close(socket, stream);
            throw;
        }
    }

    private static void Close(Socket socket, Stream? stream)
    {
        stream?.Dispose();
        socket.Dispose();
    }

    private static async Task UpgradeAsync(Stream stream, RelayNodeAddress address, CancellationToken cancel)
    {
        var request = $"GET {RelayProtocol.UpgradePath} HTTP/1.1\r\nHost: {address.Host}\r\nUpgrade: {RelayProtocol.UpgradeToken}\r\nConnection: Upgrade\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request), cancel);
        var head = await RelayProtocol.ReadHttpHeadAsync(stream, cancel);
        if (!head.StartsWith("HTTP/1.1 101", StringComparison.Ordinal))
            throw new RelayProtocolException("upgrade_refused", $"the relay at {address} refused the upgrade: {head.Split("\r\n")[0]}");
    }

    private static async Task<Curve25519PublicKey> ReadServerKeyAsync(RelayFrameReader reader, CancellationToken cancel)
    {
        var frame = await reader.ReadAsync(cancel) ?? throw new RelayProtocolException("closed", "the relay closed the connection before sending its key");
        if (frame.Type != RelayFrameType.ServerKey || frame.Payload.Length < RelayFrame.Magic.Length + RelayFrame.KeySize
            || !frame.Payload.AsSpan(0, RelayFrame.Magic.Length).SequenceEqual(RelayFrame.Magic))
            throw new RelayProtocolException("bad_server_key", $"expected the relay's key, got a {frame.Type} frame");
        return new Curve25519PublicKey(frame.Payload.AsSpan(RelayFrame.Magic.Length, RelayFrame.KeySize));
    }

    private static async Task<ServerInfo> ReadServerInfoAsync(RelayFrameReader reader, SealedBox box, CancellationToken cancel)
    {
        while (true)
        {
            var frame = await reader.ReadAsync(cancel) ?? throw new RelayProtocolException("login_refused", "the relay closed the connection: it refused the login");
            if (frame.Type == RelayFrameType.Health)
                throw new RelayProtocolException("login_refused", "the relay refused the login: " + Encoding.UTF8.GetString(frame.Payload));
            if (frame.Type != RelayFrameType.ServerInfo) continue;
            var plain = box.Open(frame.Payload) ?? throw new RelayProtocolException("bad_server_info", "the relay's answer does not open with its key");
            return RelayLoginJson.Parse<ServerInfo>(plain);
        }
    }

    /// <summary>Queues a packet for <paramref name="destination"/>; false if the connection is closed or the packet too large.</summary>
    public bool TrySend(Curve25519PublicKey destination, ReadOnlySpan<byte> packet)
    {
        if (IsClosed || packet.Length > RelayFrame.MaxPacketSize) return false;
        return _outbox.TryEnqueuePacket(RelayFrame.Build(RelayFrameType.SendPacket, destination, packet), packet);
    }

    /// <summary>Queues a frame ahead of packets (mesh forwarding, WatchConns, NotePreferred, pings).</summary>
    public bool TrySendFrame(byte[] frame)
    {
        return !IsClosed && _outbox.TryEnqueueControl(frame);
    }

    /// <summary>Queues a frame to a mesh peer, which delivers it to one of its own clients.</summary>
    public bool TryForward(Curve25519PublicKey source, Curve25519PublicKey destination, ReadOnlySpan<byte> packet)
    {
        return !IsClosed && _outbox.TryEnqueuePacket(RelayFrame.BuildForward(source, destination, packet), packet);
    }

    /// <summary>The next frame from the relay other than keepalives and pings (which are handled here); null when the connection ends.</summary>
    public async ValueTask<(RelayFrameType Type, byte[] Payload)?> ReadAsync(CancellationToken cancel)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancel, _closing.Token);
        try
        {
            while (true)
            {
                var frame = await _reader.ReadAsync(linked.Token);
                if (frame is null) { await DisposeAsync(); return null; }
                Interlocked.Exchange(ref _lastReadTicks, Environment.TickCount64);
                switch (frame.Value.Type)
                {
                    case RelayFrameType.KeepAlive:
                        continue;
                    case RelayFrameType.Ping:
                        TrySendFrame(RelayFrame.Build(RelayFrameType.Pong, frame.Value.Payload.AsSpan(0, Math.Min(RelayFrame.PingSize, frame.Value.Payload.Length))));
                        continue;
                    default:
                        return frame;
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException or SocketException)
        {
            if (cancel.IsCancellationRequested) throw;
            await DisposeAsync();
            return null;
        }
    }

    private async Task WriteLoopAsync()
    {
        try
        {
            await _outbox.DrainAsync(_stream, _closing.Token);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException or SocketException)
        {
            _closing.Cancel();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_closing.IsCancellationRequested) _closing.Cancel();
        try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        try { await _writer.WaitAsync(TimeSpan.FromSeconds(2)); } catch (Exception e) when (e is OperationCanceledException or TimeoutException) { }
        await _stream.DisposeAsync();
        _socket.Dispose();
    }
}
