using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Cluster;
using Akka.Configuration;
using Akka.Event;
using Akka.Remote.Transport;
using Weft.Relay;

namespace Weft.Cluster.Hosting.Remoting;

/// <summary>What <see cref="ClusterTlsTransport"/> takes from the host: the cluster secret.</summary>
public sealed class ClusterTlsSetup(ClusterSecret secret) : Setup
{
    public ClusterSecret Secret { get; } = secret;
}

/// <summary>
/// Akka.Remote's transport between coordinator nodes: TCP with mutual TLS over the certificate derived
/// from the cluster secret, framed as Akka's own TCP transport frames (a 4-byte little-endian length,
/// then the payload), so a node on it and a node on Akka's DotNetty transport understand each other.
/// <para>
/// It exists for one difference. Akka's transport stops the whole node when a TLS handshake the node
/// started fails, for whatever cause, and most causes are the peer's: a node that dials another in the
/// last moment of its crash or shutdown, or dials a hung one and gives up, went down with it. One lost
/// node became two (README, "It goes away in the middle of a handshake", before this transport). Here a
/// cut-off or timed-out handshake fails that one association, as a refused connection does, and Akka
/// tries again later. Only a peer whose certificate this node refuses stops it, and only while it is
/// not a member yet (exit code 79, <see cref="ClusterSecretMismatch"/>): a secret that differs is a
/// misconfiguration no retry mends, and the node joining with it is the one to stop, not the members.
/// </para>
/// </summary>
public sealed class ClusterTlsTransport : Transport
{
    /// <summary>Where its settings live, and the name <c>akka.remote.enabled-transports</c> lists.</summary>
    public const string ConfigPath = "akka.remote.weft-tls";

    private readonly ClusterSecret _secret;
    private readonly ILoggingAdapter _log;
    private readonly string _hostname;
    private readonly int _port;
    private readonly int? _sendBufferSize;
    private readonly int? _receiveBufferSize;
    private readonly TimeSpan _handshakeTimeout;
    private readonly TimeSpan _flushWait;
    // Inbound TLS handshakes accepted and not yet finished: each holds a socket and a TLS state for up to connection-timeout.
    private readonly HeldPerAddress _pendingHandshakes;
    private readonly Control.LogThrottle _overLimitWarnings;
    private readonly TaskCompletionSource<IAssociationEventListener> _associationListener = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentDictionary<ClusterTlsAssociation, byte> _open = new();
    private readonly CancellationTokenSource _stopping = new();
    private Socket? _listener;
    private Address? _localAddress;

    public ClusterTlsTransport(ActorSystem system, Config config)
    {
        System = system;
        Config = config;
        _secret = system.Settings.Setup.Get<ClusterTlsSetup>().Value?.Secret
                  ?? throw new ConfigurationException($"{nameof(ClusterTlsTransport)} needs a {nameof(ClusterTlsSetup)} (the cluster secret) in the actor system's setup");
        _log = Logging.GetLogger(system, typeof(ClusterTlsTransport));
        SchemeIdentifier = "ssl.tcp";
        _hostname = config.GetString("hostname", "127.0.0.1");
        _port = config.GetInt("port", 0);
        MaximumPayloadBytes = config.GetByteSize("maximum-frame-size", 128_000) ?? 128_000;
        _sendBufferSize = (int?)config.GetByteSize("send-buffer-size", null);
        _receiveBufferSize = (int?)config.GetByteSize("receive-buffer-size", null);
        _handshakeTimeout = config.GetTimeSpan("connection-timeout", TimeSpan.FromSeconds(15), allowInfinite: false);
        _flushWait = system.Settings.Config.GetTimeSpan("akka.remote.flush-wait-on-shutdown", TimeSpan.FromSeconds(2), allowInfinite: false);
        _pendingHandshakes = new HeldPerAddress(config.GetInt("maximum-pending-handshakes", 64), config.GetInt("maximum-pending-handshakes-per-address", 8));
        _overLimitWarnings = new Control.LogThrottle(_handshakeTimeout);
    }

    /// <summary>The HOCON that makes Akka.Remote use this transport, bound to and advertising <paramref name="hostname"/>:<paramref name="port"/>.</summary>
    public static string Configuration(string hostname, int port) => $$"""
        akka.remote {
          enabled-transports = ["{{ConfigPath}}"]
          weft-tls {
            transport-class = "{{typeof(ClusterTlsTransport).AssemblyQualifiedName}}"
            applied-adapters = []
            hostname = "{{hostname}}"
            port = {{port}}
          }
        }
        """;

    public override bool IsResponsibleFor(Address remote) => true;

    public override async Task<(Address, TaskCompletionSource<IAssociationEventListener>)> Listen()
    {
        var endpoint = await Resolve(_hostname, _port);
        var listener = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.Bind(endpoint);
            listener.Listen(4096);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new Akka.Remote.RemoteTransportException($"the cluster transport cannot listen on {endpoint}: {e.Message}", e);
        }
        _listener = listener;
        var bound = (IPEndPoint)listener.LocalEndPoint!;
        _localAddress = new Address(SchemeIdentifier, System.Name, _hostname, bound.Port);
        // Connections wait in the backlog until Akka listens for them, as with Akka's own transport.
        _ = _associationListener.Task.ContinueWith(t => AcceptLoop(listener, t.Result), TaskContinuationOptions.OnlyOnRanToCompletion);
        return (_localAddress, _associationListener);
    }

    public override async Task<AssociationHandle> Associate(Address remoteAddress)
    {
        var local = _localAddress ?? throw new InvalidAssociationException("the cluster transport is not listening");
        if (remoteAddress.Host is not { } host || remoteAddress.Port is not { } port)
            throw new InvalidAssociationException($"{remoteAddress} has no host and port");
        var socket = await Connect(host, port, remoteAddress);
        var stream = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        var refused = false;
        try
        {
            using var timeout = Deadline();
            await stream.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = host,
                LocalCertificateSelectionCallback = (_, _, _, _, _) => _secret.Certificate,
                RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                {
                    refused = !AcceptPeer(certificate, remoteAddress.ToString());
                    return !refused;
                },
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            }, timeout.Token);
        }
        catch (Exception e)
        {
            await stream.DisposeAsync();
            if (refused)
            {
                // The two hold different secrets, which waiting cannot mend. A node that is not a member yet is the
                // one misconfigured: it stops and says why. A member stays (the peer it dialled, at an address the
                // cluster knows, was restarted with another secret) and says so, as loudly.
                if (IsClusterMember())
                    _log.Error("Refused the cluster node at {0}: it does not hold this cluster's secret. This node stays; give that one the cluster's secret", remoteAddress);
                else
                    _ = CoordinatedShutdown.Get(System).Run(new ClusterSecretMismatch(remoteAddress));
                throw new InvalidAssociationException($"{remoteAddress} does not hold this cluster's secret");
            }
            var why = e is OperationCanceledException && !_stopping.IsCancellationRequested
                ? $"it did not complete within {_handshakeTimeout.TotalSeconds:0.#} s (the node took the connection but does not answer: it may hang)"
                : $"the node closed the connection before it completed ({e.GetBaseException().Message}), as a node does while it shuts down or crashes";
            _log.Warning("A cluster TLS handshake with {0} failed: {1}. This node carries on and tries again later", remoteAddress, why);
            throw new InvalidAssociationException($"TLS handshake with {remoteAddress} failed: {why}", e);
        }
        return Opened(local, remoteAddress, socket, stream);
    }

    public override async Task<bool> Shutdown()
    {
        _stopping.Cancel();
        _listener?.Dispose();
        var closing = _open.Keys.Select(association => association.CloseGracefully()).ToArray();
        var all = Task.WhenAll(closing);
        await Task.WhenAny(all, Task.Delay(_flushWait + TimeSpan.FromSeconds(1)));
        return all.IsCompletedSuccessfully;
    }

    private async Task AcceptLoop(Socket listener, IAssociationEventListener associations)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(_stopping.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                // Out of file descriptors, say: try again shortly rather than spin.
                _log.Warning("The cluster transport could not accept a connection: {0}", e.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(100));
                continue;
            }
            var remote = (IPEndPoint)socket.RemoteEndPoint!;
            if (_pendingHandshakes.TryEnter(remote.Address) != HeldPerAddress.Refusal.None)
            {
                RefuseOverLimit(socket, remote);
                continue;
            }
            // Each handshake on its own: a slow or silent one must not hold up the next node's.
            _ = AcceptOne(socket, remote, associations);
        }
    }

    /// <summary>
    /// Closes a connection that arrived with too many handshakes pending (in all, or from its address):
    /// at once, before any TLS state exists for it. A node dialling in is refused as if it were not
    /// listening, and dials again later. Warns at most once per connection-timeout, with the count.
    /// </summary>
    private void RefuseOverLimit(Socket socket, IPEndPoint remote)
    {
        socket.Dispose();
        if (!_overLimitWarnings.ShouldLog(DateTimeOffset.UtcNow, out var others)) return;
        _log.Warning("Closed an inbound cluster connection from {0} unanswered: {1} TLS handshakes are pending, the most allowed is {2} in all and {3} from one address " +
                     "(akka.remote.weft-tls.maximum-pending-handshakes, -per-address). Something opens connections to the cluster port and does not complete them " +
                     "({4} more closed since the last such line)",
            remote, _pendingHandshakes.Count, _pendingHandshakes.Maximum, _pendingHandshakes.MaximumPerAddress, others);
    }

    private async Task AcceptOne(Socket socket, IPEndPoint remote, IAssociationEventListener associations)
    {
        try
        {
            await Handshake(socket, remote, associations);
        }
        catch (Exception e)
        {
            // The connection went before the handshake began (a reset while it was set up).
            _log.Debug("An inbound cluster connection from {0} failed: {1}", remote, e.GetBaseException().Message);
            socket.Dispose();
        }
        finally
        {
            _pendingHandshakes.Leave(remote.Address);
        }
    }

    private async Task Handshake(Socket socket, IPEndPoint remote, IAssociationEventListener associations)
    {
        var remoteAddress = new Address(SchemeIdentifier, System.Name, remote.Address.IsIPv4MappedToIPv6 ? remote.Address.MapToIPv4().ToString() : remote.Address.ToString(), remote.Port);
        Tune(socket);
        var stream = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        try
        {
            using var timeout = Deadline();
            await stream.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
            {
                ServerCertificate = _secret.Certificate,
                ClientCertificateRequired = true,
                RemoteCertificateValidationCallback = (_, certificate, _, _) => AcceptPeer(certificate, remote.ToString()),
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            }, timeout.Token);
        }
        catch (Exception e)
        {
            // Refused peers were logged by AcceptPeer; anything else (a scanner, a peer gone midway) is not this node's problem.
            _log.Debug("An inbound cluster TLS handshake from {0} failed: {1}", remote, e.GetBaseException().Message);
            await stream.DisposeAsync();
            return;
        }
        if (_stopping.IsCancellationRequested)
        {
            await stream.DisposeAsync();
            return;
        }
        associations.Notify(new InboundAssociation(Opened(_localAddress!, remoteAddress, socket, stream)));
    }

    private bool IsClusterMember() =>
        ((ExtendedActorSystem)System).Provider is ClusterActorRefProvider
        && Akka.Cluster.Cluster.Get(System).SelfMember.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Leaving;

    private bool AcceptPeer(X509Certificate? certificate, string peer)
    {
        if (_secret.IsClusterPeer(certificate)) return true;
        _log.Warning("Refused a cluster connection with {0}: it does not hold this cluster's secret", peer);
        return false;
    }

    private async Task<Socket> Connect(string host, int port, Address remoteAddress)
    {
        var endpoint = await Resolve(host, port);
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        Tune(socket);
        try
        {
            using var timeout = Deadline();
            await socket.ConnectAsync(endpoint, timeout.Token);
            return socket;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            throw new InvalidAssociationException($"cannot connect to {remoteAddress}: {(e is SocketException s ? s.Message : "timed out")}", e);
        }
    }

    private static async Task<IPEndPoint> Resolve(string host, int port)
    {
        if (IPAddress.TryParse(host, out var address)) return new IPEndPoint(address, port);
        try
        {
            var addresses = await Dns.GetHostAddressesAsync(host);
            var chosen = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses.FirstOrDefault();
            return chosen is null ? throw new InvalidAssociationException($"{host} has no address") : new IPEndPoint(chosen, port);
        }
        catch (SocketException e)
        {
            throw new InvalidAssociationException($"cannot resolve {host}: {e.Message}", e);
        }
    }

    private void Tune(Socket socket)
    {
        socket.NoDelay = true;
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
        if (_sendBufferSize is { } send) socket.SendBufferSize = send;
        if (_receiveBufferSize is { } receive) socket.ReceiveBufferSize = receive;
    }

    /// <summary>Cancelled when a connect or a handshake has taken connection-timeout, or the transport stops.</summary>
    private CancellationTokenSource Deadline()
    {
        var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        deadline.CancelAfter(_handshakeTimeout);
        return deadline;
    }

    /// <summary>An authenticated connection, handed to Akka and tracked until it closes.</summary>
    private ClusterTlsAssociation Opened(Address local, Address remote, Socket socket, SslStream stream)
    {
        var association = new ClusterTlsAssociation(local, remote, socket, stream, MaximumPayloadBytes, _flushWait, _handshakeTimeout, _log, Forget);
        _open[association] = 0;
        if (_stopping.IsCancellationRequested) _ = association.CloseGracefully();
        return association;
    }

    private void Forget(ClusterTlsAssociation association) => _open.TryRemove(association, out _);
}

/// <summary>
/// Why a node stops when it refused the certificate of a node it dialled: the two were given different
/// cluster secrets. Exit code 79, as Akka's own transport uses for a failed handshake.
/// </summary>
public sealed class ClusterSecretMismatch(Address peer) : CoordinatedShutdown.Reason
{
    public override int ExitCode => 79;

    public override string ToString() =>
        $"a cluster TLS handshake with {peer} failed: this node and the one it reached do not hold the same cluster secret (Weft:Cluster:Secret or SecretFile)";
}
