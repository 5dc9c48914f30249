using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Contracts.Crypto;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay;

/// <summary>
/// A relay node: admits nodes that hold a cluster ticket, forwards packets between them by node
/// key, tells senders when their peer is gone, and meshes with the other relays of its region so
/// that a client here reaches a client there (one hop, never more). It also runs the region's
/// STUN server.
/// <para>
/// State is only the live connections: a restarted relay starts empty, clients reconnect (with
/// their tickets) and mesh peers re-learn who is here from a fresh WatchConns flood.
/// </para>
/// </summary>
public sealed class RelayServer : IAsyncDisposable
{
    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    private readonly RelayOptions _options;
    private readonly ILogger _log;
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stopping = new();
    private readonly HeldPerAddress _connections;
    private readonly List<Task> _loops = [];
    private readonly byte[] _serverKeyFrame;
    private readonly byte[]? _meshKey;
    // Every connected client by node key; more than one connection per key is allowed, the last one that sent is active.
    private readonly ConcurrentDictionary<Curve25519PublicKey, ClientSet> _clients = new();
    // Clients of other relays in the region, and the mesh link that reaches each.
    // For each key a mesh peer has: every link that announced it, the latest last. A client can be on two
    // relays for a while (it moved, and the old relay holds its dead connection until it times out), and
    // their announcements can arrive in any order: one relay's "gone" must not erase the other's "present".
    private readonly ConcurrentDictionary<Curve25519PublicKey, ImmutableArray<(MeshLink Link, string TailnetId)>> _forwarders = new();
    private readonly ConcurrentDictionary<RelayConnection, byte> _watchers = new();
    // Who sent to each key recently: the reverse of every connection's SentTo, so that a departure tells
    // just them, and does not walk every client here (a storm of departures would cost clients²).
    private readonly ConcurrentDictionary<Curve25519PublicKey, ConcurrentDictionary<RelayConnection, byte>> _sentBy = new();
    private readonly List<MeshLink> _meshLinks = [];
    // Node keys whose tickets the cluster revoked (the device was deleted or expired), each with the latest
    // expiry a revoked ticket can have: a ticket that expires later was issued after the revocation.
    private readonly ConcurrentDictionary<Curve25519PublicKey, DateTimeOffset> _revoked = new();
    private long _revocationsPrunedAt;
    private StunServer? _stun;

    public RelayServer(RelayOptions options, ILogger? log = null)
    {
        _options = options;
        _log = log ?? NullLogger.Instance;
        _listener = new TcpListener(options.Listen);
        _connections = new HeldPerAddress(options.MaxConnections, options.MaxConnectionsPerAddress);
        _serverKeyFrame = RelayFrame.Build(RelayFrameType.ServerKey, [.. RelayFrame.Magic, .. options.ServerKey.PublicKey.ToArray()]);
        if (options.MeshKey is { } mesh)
        {
            _meshKey = Convert.FromHexString(mesh);
            if (_meshKey.Length != 32) throw new ArgumentException("a mesh key is 64 hex characters");
        }
        if (options.AccessCheck is { } check)
            _loginChecks = new LoginAccessBatches(tickets => AskIssuerAsync(check, tickets, _stopping.Token), LoginCheckWindow, RelayAccessQuery.MaxTickets);
    }

    /// <summary>How long a login's access check waits for others to share its ask of the issuer.</summary>
    private static readonly TimeSpan LoginCheckWindow = TimeSpan.FromMilliseconds(50);

    private readonly LoginAccessBatches? _loginChecks;

    /// <summary>Asks of the issuer made for logins (each one for every login of its batch).</summary>
    internal long LoginCheckBatches => _loginChecks?.BatchesSent ?? 0;

    public RelayCounters Counters { get; } = new();

    public Curve25519PublicKey ServerKey => _options.ServerKey.PublicKey;

    /// <summary>The TCP endpoint it listens on (the port is known after <see cref="Start"/>).</summary>
    public IPEndPoint LocalEndpoint => (IPEndPoint)_listener.LocalEndpoint;

    public IPEndPoint? StunEndpoint => _stun?.LocalEndpoint;

    internal RelayOptions Options => _options;

    internal ILogger Log => _log;

    /// <summary>Node keys connected here now.</summary>
    public IReadOnlyCollection<Curve25519PublicKey> ConnectedKeys => _clients.Keys.ToList();

    /// <summary>How many connections <paramref name="key"/> holds here now (more than one: a client's old connection not closed yet).</summary>
    public int ConnectionCountOf(Curve25519PublicKey key) => ConnectionsOf(key).Count;

    /// <summary>Node keys this relay reaches through its mesh peers.</summary>
    public IReadOnlyCollection<Curve25519PublicKey> MeshedKeys => _forwarders.Keys.ToList();

    /// <summary>How many mesh peers have said that <paramref name="key"/> is connected to them.</summary>
    internal int MeshRoutesTo(Curve25519PublicKey key) => _forwarders.TryGetValue(key, out var forwarders) ? forwarders.Length : 0;

    public void Start()
    {
        _listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        _listener.Start(512);
        _loops.Add(Task.Run(AcceptLoopAsync));
        if (_options.Stun is { } stun)
        {
            _stun = new StunServer(stun, Counters, _log);
            _stun.Start();
        }
        if (_options.AccessCheck is { } check && _options.AccessRecheckInterval > TimeSpan.Zero && _options.AccessRecheckInterval != Timeout.InfiniteTimeSpan)
            _loops.Add(Task.Run(() => RecheckAccessLoopAsync(check)));
        foreach (var peer in _options.MeshPeers)
        {
            var link = new MeshLink(this, peer);
            _meshLinks.Add(link);
            link.Start(_stopping.Token);
        }
        _log.LogInformation("Relay {Key} listening on {Endpoint} (STUN {Stun}, mesh peers {Mesh})",
            KeyText.Format("relaykey:", ServerKey), LocalEndpoint, StunEndpoint?.ToString() ?? "off", _options.MeshPeers.Count);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try { socket = await _listener.AcceptSocketAsync(_stopping.Token); }
            // Stopping: the listener may have stopped between the check above and this call ("not listening").
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException || _stopping.IsCancellationRequested) { return; }
            catch (SocketException) { continue; }
            var source = (socket.RemoteEndPoint as IPEndPoint)?.Address ?? IPAddress.None;
            if (_connections.TryEnter(source) is not HeldPerAddress.Refusal.None and var refusal)
            {
                Counters.Refused(refusal == HeldPerAddress.Refusal.Total ? "too_many_connections" : "too_many_connections_from_address");
                socket.Dispose();
                continue;
            }
            socket.NoDelay = true;
            _ = Task.Run(() => ServeAsync(socket, source));
        }
    }

    private async Task ServeAsync(Socket socket, IPAddress source)
    {
        RelayConnection? connection = null;
        var framing = false;
        Stream stream = new NetworkStream(socket, ownsSocket: true);
        try
        {
            using var handshake = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            handshake.CancelAfter(HandshakeTimeout);
            stream = await NegotiateAsync(socket, stream, handshake.Token);
            await stream.WriteAsync(_serverKeyFrame, handshake.Token);
            framing = true;
            var reader = new RelayFrameReader(stream);
            var (key, box, isMesh, ticket) = await LoginAsync(reader, handshake.Token);
            using (box)
            {
                connection = new RelayConnection(this, stream, reader, key, isMesh, ticket);
                // Registered before the client hears it is in, so that its first packet's answer finds it here.
                if (!isMesh) Register(connection);
                // A revocation that came while this client logged in found it not registered yet: it is checked again now.
                if (ticket is not null && IsRevoked(ticket)) throw new RelayProtocolException("ticket_revoked", RevokedMessage);
                var serverInfo = new ServerInfo { TicketExpiresUnix = ticket?.Expiry.ToUnixTimeSeconds() ?? 0 };
                await stream.WriteAsync(RelayFrame.Build(RelayFrameType.ServerInfo, box.Seal(RelayLoginJson.Serialize(serverInfo))), handshake.Token);
            }
            await connection.RunAsync(ticket?.Expiry, _stopping.Token);
        }
        catch (RelayProtocolException e)
        {
            Counters.Refused(e.Reason);
            _log.LogDebug("Relay connection closed: {Reason}", e.Message);
            // Say why before closing (a refused login learns its reason), unless the session was already running.
            if (framing && connection is null) await TrySayAsync(stream, e.Message);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or AuthenticationException)
        {
            _log.LogDebug("Relay connection ended: {Error}", e.Message);
        }
        finally
        {
            if (connection is not null) Unregister(connection);
            await stream.DisposeAsync();
            _connections.Leave(source);
        }
    }

    private static async Task TrySayAsync(Stream stream, string problem)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await stream.WriteAsync(RelayFrame.Build(RelayFrameType.Health, System.Text.Encoding.UTF8.GetBytes(problem)), timeout.Token);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or SocketException) { }
    }

    /// <summary>TLS if the client starts one and a certificate is configured; then an HTTP upgrade or the raw preface.</summary>
    private async Task<Stream> NegotiateAsync(Socket socket, Stream stream, CancellationToken cancel)
    {
        var first = new byte[1];
        if (await socket.ReceiveAsync(first, SocketFlags.Peek, cancel) == 0) throw new IOException("closed before the preface");
        if (first[0] == 0x16)
        {
            if (_options.Certificate is null) throw new RelayProtocolException("tls_not_configured", "a TLS handshake, but this relay has no certificate");
            var tls = new SslStream(stream, leaveInnerStreamOpen: false);
            await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = _options.Certificate }, cancel);
            stream = tls;
        }
        var preface = new byte[4];
        await stream.ReadExactlyAsync(preface, cancel);
        if (preface.AsSpan().SequenceEqual("GET "u8) || preface.AsSpan().SequenceEqual("HEAD"u8))
        {
            var head = await RelayProtocol.ReadHttpHeadAsync(stream, cancel, preface);
            var requestLine = head[..head.IndexOf("\r\n", StringComparison.Ordinal)];
            var path = requestLine.Split(' ') is { Length: 3 } parts ? parts[1] : "";
            if (path == RelayProtocol.UpgradePath && head.Contains("Upgrade: " + RelayProtocol.UpgradeToken, StringComparison.OrdinalIgnoreCase))
            {
                await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {RelayProtocol.UpgradeToken}\r\nConnection: Upgrade\r\n\r\n"), cancel);
                return stream;
            }
            // Probes for latency and captive-portal checks; anything else is not ours.
            var status = path is "/relay/probe" or "/generate_204" ? "204 No Content" : path == RelayProtocol.UpgradePath ? "426 Upgrade Required" : "404 Not Found";
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), cancel);
            throw new IOException("a plain HTTP request, answered " + status);
        }
        var rest = new byte[RelayFrame.Magic.Length - 4];
        await stream.ReadExactlyAsync(rest, cancel);
        if (!preface.Concat(rest).SequenceEqual(RelayFrame.Magic.ToArray()))
            throw new RelayProtocolException("unknown_preface", "the connection starts with neither an HTTP upgrade nor the relay preface");
        return stream;
    }

    private async Task<(Curve25519PublicKey Key, SealedBox Box, bool IsMesh, RelayTicket? Ticket)> LoginAsync(RelayFrameReader reader, CancellationToken cancel)
    {
        // Any other first frame is refused from its header: before login, nobody makes the relay hold more than a login's size.
        var frame = await reader.ReadAsync(cancel, RelayFrameType.ClientInfo, unexpectedReason: "expected_login") ?? throw new IOException("closed before the login");
        if (frame.Payload.Length < RelayFrame.KeySize + SealedBox.Overhead) throw new RelayProtocolException("bad_login", "the login frame is too short");
        var key = new Curve25519PublicKey(frame.Payload.AsSpan(0, RelayFrame.KeySize));
        var box = SealedBox.Between(_options.ServerKey, key) ?? throw new RelayProtocolException("bad_login_key", "the client's key is a low-order point");
        try
        {
            // Opening the box proves the client holds the private half of the key it names.
            var plain = box.Open(frame.Payload.AsSpan(RelayFrame.KeySize)) ?? throw new RelayProtocolException("bad_login_box", "the login does not open with the key it names");
            var info = RelayLoginJson.Parse<ClientInfo>(plain);
            if (info.MeshKey is not null)
            {
                var offered = new byte[32];
                if (_meshKey is null || !KeyEncoding.TryDecodeHex(info.MeshKey, offered) || !CryptographicOperations.FixedTimeEquals(offered, _meshKey))
                    throw new RelayProtocolException("bad_mesh_key", "the mesh key is wrong (or this relay has no mesh)");
                return (key, box, true, null);
            }
            if (info.Ticket is null) throw new RelayProtocolException("ticket_missing", "a client must present a ticket from the cluster");
            var ticket = RelayTicket.Verify(info.Ticket, _options.TicketIssuers, _options.Clock(), out var refusal);
            if (ticket is null) throw new RelayProtocolException("ticket_" + ToSnake(refusal), $"the ticket was refused: {refusal}");
            if (ticket.NodeKey != key) throw new RelayProtocolException("ticket_" + ToSnake(TicketRefusal.WrongNodeKey), "the ticket is for another node key");
            if (IsRevoked(ticket)) throw new RelayProtocolException("ticket_revoked", RevokedMessage);
            if (!await StillHasAccessAsync(ticket, cancel))
            {
                // Remembered as a revocation heard over the wire: the next try with this ticket is refused without asking,
                // and the key's connections that it covers close now (the sweep passes over revoked ones as closing already).
                RevokeCovered(ticket.NodeKey, ticket.Expiry, "ticket_revoked_at_login");
                throw new RelayProtocolException("ticket_revoked", RevokedMessage);
            }
            if (_clients.Count >= _options.MaxClients) throw new RelayProtocolException("full", "this relay is at its client limit");
            return (key, box, false, ticket);
        }
        catch
        {
            box.Dispose();
            throw;
        }
    }

    private static string ToSnake(TicketRefusal refusal) => refusal switch
    {
        TicketRefusal.Malformed => "malformed",
        TicketRefusal.UnknownVersion => "unknown_version",
        TicketRefusal.BadSignature => "bad_signature",
        TicketRefusal.Expired => "expired",
        TicketRefusal.WrongNodeKey => "wrong_node_key",
        _ => "refused",
    };

    // --- revocation ---

    private const string RevokedMessage = "the cluster revoked this node key's ticket (its device was deleted, expired or logged out, or the key was rotated away)";

    /// <summary>
    /// The cluster took this node key's access away before its tickets expire: its connections here close
    /// now, and a ticket for it that expires by <paramref name="ticketsExpiringBy"/> (any issued before the
    /// revocation) is refused from now on. A ticket issued later (the device registered again) is let in.
    /// </summary>
    public void Revoke(Curve25519PublicKey nodeKey, DateTimeOffset ticketsExpiringBy)
    {
        RememberRevoked(nodeKey, ticketsExpiringBy);
        foreach (var connection in ConnectionsOf(nodeKey))
        {
            Counters.Refused("ticket_revoked_in_session");
            _ = connection.CloseSayingAsync(RevokedMessage, CancellationToken.None);
        }
    }

    /// <summary>
    /// The issuer's answer (<see cref="RelayOptions.AccessCheck"/>) at login: true without a check, and when it cannot tell in time.
    /// Logins within <see cref="LoginCheckWindow"/> of each other share one ask (<see cref="LoginAccessBatches"/>).
    /// </summary>
    private async Task<bool> StillHasAccessAsync(RelayTicket ticket, CancellationToken cancel)
    {
        if (_loginChecks is null) return true;
        var (allowed, problem) = await _loginChecks.AskAsync(ticket).WaitAsync(cancel);
        Counters.AccessChecked(allowed, recheck: false);
        if (allowed is { } answer) return answer;
        _log.LogWarning("Relay admitted {Key} on its ticket alone: the cluster did not confirm its access within {Timeout} s ({Error})",
            KeyText.Format("nodekey:", ticket.NodeKey), _options.AccessCheckTimeout.TotalSeconds, problem ?? "it could not tell");
        return true;
    }

    /// <summary>
    /// Asks <paramref name="check"/> (<see cref="RelayOptions.AccessCheck"/>) about <paramref name="tickets"/>, within
    /// <see cref="RelayOptions.AccessCheckTimeout"/>: one answer per ticket, null where the issuer could not tell; all null,
    /// and why, when the check failed, did not answer in time, or answered for another number of tickets.
    /// </summary>
    private async Task<(IReadOnlyList<bool?> Allowed, string? Problem)> AskIssuerAsync(
        Func<IReadOnlyList<RelayTicket>, CancellationToken, Task<IReadOnlyList<bool?>>> check, IReadOnlyList<RelayTicket> tickets, CancellationToken cancel)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        limit.CancelAfter(_options.AccessCheckTimeout);
        string problem;
        try
        {
            var allowed = await check(tickets, limit.Token).WaitAsync(limit.Token);
            if (allowed.Count == tickets.Count) return (allowed, null);
            problem = $"{allowed.Count} answers for {tickets.Count} tickets";
        }
        catch (Exception e) when (!cancel.IsCancellationRequested)
        {
            problem = e.Message;
        }
        return ([.. tickets.Select(_ => (bool?)null)], problem);
    }

    /// <summary>Sweeps until the relay stops; a sweep that fails is logged, and the next one runs as planned (nothing else would start the loop again).</summary>
    private async Task RecheckAccessLoopAsync(Func<IReadOnlyList<RelayTicket>, CancellationToken, Task<IReadOnlyList<bool?>>> check)
    {
        var interval = _options.AccessRecheckInterval;
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(interval + interval * (Random.Shared.NextDouble() / 10), _stopping.Token);
                await RecheckAccessAsync(check, _stopping.Token);
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                Counters.AccessRechecksFailed();
                _log.LogError(e, "Relay's check of its live connections' access failed; the next runs in {Interval}", interval);
            }
        }
    }

    /// <summary>
    /// Asks the issuer about every live client connection again (in batches, two at a time), and closes each
    /// whose key it no longer vouches for, remembering the key as a heard revocation. A revocation this relay
    /// heard closed its connections already, but one it missed (it was cut off from the cluster then, or
    /// restarted since), a node key rotated away (for which none is sent), or a separate relay (which hears
    /// none) leaves them up until their tickets expire.
    /// </summary>
    private async Task RecheckAccessAsync(Func<IReadOnlyList<RelayTicket>, CancellationToken, Task<IReadOnlyList<bool?>>> check, CancellationToken cancel)
    {
        var live = new List<RelayConnection>();
        foreach (var set in _clients.Values)
            lock (set) live.AddRange(set.Connections);
        // Revoked already (heard, or found by an earlier sweep): closing.
        var asked = live.Where(c => c.Ticket is { } ticket && !IsRevoked(ticket)).ToList();
        var unconfirmed = 0;
        string? problem = null;
        await Parallel.ForEachAsync(asked.Chunk(RelayAccessQuery.MaxTickets), new ParallelOptions { MaxDegreeOfParallelism = 2, CancellationToken = cancel }, async (batch, token) =>
        {
            var (allowed, why) = await AskIssuerAsync(check, [.. batch.Select(c => c.Ticket!)], token);
            for (var i = 0; i < batch.Length; i++)
            {
                var (connection, ticket) = (batch[i], batch[i].Ticket!);
                Counters.AccessChecked(allowed[i], recheck: true);
                switch (allowed[i])
                {
                    case true:
                        break;
                    case null:
                        Interlocked.Increment(ref unconfirmed);
                        problem = why ?? "it could not tell";
                        break;
                    case false:
                        _log.LogInformation("Relay closes {Key}'s connection: the cluster no longer vouches for its node key", KeyText.Format("nodekey:", ticket.NodeKey));
                        RevokeCovered(ticket.NodeKey, ticket.Expiry, "ticket_revoked_on_recheck");
                        break;
                }
            }
        });
        if (unconfirmed > 0)
            _log.LogWarning("Relay kept {Count} of {Live} connections whose access the cluster did not confirm within {Timeout} s ({Error}); they are asked again in {Interval}",
                unconfirmed, live.Count, _options.AccessCheckTimeout.TotalSeconds, problem, _options.AccessRecheckInterval);
    }

    /// <summary>
    /// The issuer no longer vouches for a ticket of <paramref name="nodeKey"/> that expires at <paramref name="ticketsExpiringBy"/>:
    /// that ticket and any older one are refused from now on, and the key's connections here that hold one close now.
    /// </summary>
    private void RevokeCovered(Curve25519PublicKey nodeKey, DateTimeOffset ticketsExpiringBy, string reason)
    {
        RememberRevoked(nodeKey, ticketsExpiringBy);
        foreach (var connection in ConnectionsOf(nodeKey))
        {
            if (connection.Ticket is not { } held || !IsRevoked(held) || connection.IsClosing) continue;
            Counters.Refused(reason);
            _ = connection.CloseSayingAsync(RevokedMessage, CancellationToken.None);
        }
    }

    private void RememberRevoked(Curve25519PublicKey nodeKey, DateTimeOffset ticketsExpiringBy)
    {
        PruneRevocations();
        _revoked.AddOrUpdate(nodeKey, ticketsExpiringBy, (_, held) => held > ticketsExpiringBy ? held : ticketsExpiringBy);
    }

    /// <summary>Forgets revocations whose tickets have all expired (at most once a minute: a deleted tailnet revokes thousands at once).</summary>
    private void PruneRevocations()
    {
        var now = _options.Clock();
        if (now - new DateTimeOffset(Interlocked.Read(ref _revocationsPrunedAt), TimeSpan.Zero) < TimeSpan.FromMinutes(1)) return;
        Interlocked.Exchange(ref _revocationsPrunedAt, now.UtcTicks);
        foreach (var (key, by) in _revoked)
            if (by <= now) _revoked.TryRemove(new KeyValuePair<Curve25519PublicKey, DateTimeOffset>(key, by));
    }

    private bool IsRevoked(RelayTicket ticket) => _revoked.TryGetValue(ticket.NodeKey, out var by) && ticket.Expiry <= by;

    // --- the registry ---

    /// <summary>
    /// A client's connection joins its key's set. Watchers (the region's other relays) hear of a key's
    /// arrival and departure under the set's lock, and a departure before its set leaves the registry,
    /// so they hear them in the order they happened: a "gone" that overtook the next connection's
    /// "present" would make them forward nothing to a client that is here.
    /// </summary>
    internal void Register(RelayConnection connection)
    {
        while (true)
        {
            var set = _clients.GetOrAdd(connection.Key, _ => new ClientSet());
            lock (set)
            {
                // The last connection of this key left between the lookup and the lock, and took the set out
                // of the registry with it (a client reconnecting as its old connection closes): joining that
                // set would leave this connection registered nowhere, reachable by no one. Take a new one.
                if (set.Removed) continue;
                var first = set.Connections.Count == 0;
                var open = set.Connections.Where(c => !c.IsClosing).ToList();
                if (open.Count >= _options.MaxConnectionsPerKey)
                {
                    Counters.Refused("too_many_connections_for_key");
                    open[0].Close();
                    open.RemoveAt(0);
                }
                foreach (var older in open)
                {
                    older.EnqueueControl(RelayFrame.Build(RelayFrameType.Health, "another connection for this node key is active"u8));
                    // The client may have left it for dead (it roamed): unless it answers, it closes, and cannot become
                    // the active one again, swallowing packets until its idle timeout, when the newer one goes.
                    older.ProbeLiveness();
                }
                set.Connections.Add(connection);
                set.Active = connection;
                // A client here wins over a forwarder for the same key.
                if (first) foreach (var watcher in _watchers.Keys) watcher.EnqueueControl(PeerPresent(connection));
                return;
            }
        }
    }

    internal void Unregister(RelayConnection connection)
    {
        _watchers.TryRemove(connection, out _);
        // It sends nothing more: it leaves the lists of those it sent to.
        foreach (var destination in connection.SentTo.Keys) ForgetSender(destination, connection);
        if (connection.IsMesh || !_clients.TryGetValue(connection.Key, out var set)) return;
        var goneFrame = RelayFrame.BuildPeerGone(connection.Key, PeerGoneReason.Disconnected);
        bool gone;
        lock (set)
        {
            set.Connections.Remove(connection);
            if (set.Active == connection) set.Active = set.Connections.LastOrDefault();
            gone = set.Connections.Count == 0;
            if (gone)
            {
                set.Removed = true;
                // Before the set leaves the registry: a new connection of the key makes a new set only after
                // that, so its "present" reaches the watchers after this "gone" (see Register).
                foreach (var watcher in _watchers.Keys) watcher.EnqueueControl(goneFrame);
                _clients.TryRemove(new KeyValuePair<Curve25519PublicKey, ClientSet>(connection.Key, set));
            }
        }
        if (gone) TellSendersGone(connection.Key, goneFrame);
    }

    /// <summary>Whoever sent to <paramref name="key"/> recently hears that it left, and forgets it sent there.</summary>
    private void TellSendersGone(Curve25519PublicKey key, byte[] goneFrame)
    {
        if (!_sentBy.TryRemove(key, out var sentBy)) return;
        foreach (var sender in sentBy.Keys)
            if (sender.SentTo.TryRemove(key, out _)) sender.EnqueueControl(goneFrame);
    }

    /// <summary>
    /// Takes <paramref name="sender"/> off the list of who sent to <paramref name="destination"/>; a list left empty goes
    /// (a sender joining it at that moment misses one PeerGone, which is advice: its next send marks it again).
    /// </summary>
    private void ForgetSender(Curve25519PublicKey destination, RelayConnection sender)
    {
        if (_sentBy.TryGetValue(destination, out var senders) && senders.TryRemove(sender, out _) && senders.IsEmpty)
            _sentBy.TryRemove(new KeyValuePair<Curve25519PublicKey, ConcurrentDictionary<RelayConnection, byte>>(destination, senders));
    }

    /// <summary>Keys that some connection here sent to recently and that have not left (tests: the index is pruned).</summary>
    internal int KeysWithRecentSenders => _sentBy.Count;

    /// <summary>
    /// A client's packet for <paramref name="destination"/>: delivered here, or forwarded to the relay
    /// that has it. Only between clients of one tailnet: a key of another tailnet is treated as not
    /// here at all (tenants never reach each other through a relay, nor learn who is connected).
    /// </summary>
    internal void Route(RelayConnection sender, Curve25519PublicKey destination, ReadOnlySpan<byte> packet)
    {
        // The sender hears PeerGone when the destination leaves, so it is marked before the packet can
        // arrive: the destination may take it and leave before this thread is back.
        var marked = sender.SentTo.TryAdd(destination, 0);
        if (marked) _sentBy.GetOrAdd(destination, static _ => new()).TryAdd(sender, 0);
        if (Deliver(sender.Key, sender.TailnetId, destination, packet)) return;
        if (_forwarders.TryGetValue(destination, out var forwarders))
        {
            for (var i = forwarders.Length - 1; i >= 0; i--)
            {
                var (link, tailnetId) = forwarders[i];
                if (tailnetId != sender.TailnetId || !link.TryForward(sender.Key, destination, packet)) continue;
                Counters.Meshed();
                return;
            }
        }
        if (marked)
        {
            sender.SentTo.TryRemove(destination, out _);
            ForgetSender(destination, sender);
        }
        Counters.Dropped("unknown_destination");
        if (RelayFrame.IsDisco(packet) && sender.AllowPeerGoneNotHere()) sender.EnqueueControl(RelayFrame.BuildPeerGone(destination, PeerGoneReason.NotHere));
    }

    /// <summary>
    /// Delivers to a client connected here; false if there is none. A client of another tailnet than
    /// <paramref name="sourceTailnet"/> counts as not here: tenants never reach each other through a
    /// relay (null: forwarded by a mesh peer, which checked).
    /// </summary>
    internal bool Deliver(Curve25519PublicKey source, string? sourceTailnet, Curve25519PublicKey destination, ReadOnlySpan<byte> packet)
    {
        if (!_clients.TryGetValue(destination, out var set)) return false;
        RelayConnection? active;
        lock (set) active = set.Active;
        if (active is null) return false;
        if (sourceTailnet is not null && active.TailnetId != sourceTailnet) return false;
        Counters.Forwarded(packet.Length);
        active.EnqueuePacket(RelayFrame.Build(RelayFrameType.RecvPacket, source, packet), packet);
        return true;
    }

    /// <summary>PeerPresent: the client's key, then its tailnet id (so that the mesh peer keeps tailnets apart too).</summary>
    private static byte[] PeerPresent(RelayConnection client) =>
        RelayFrame.Build(RelayFrameType.PeerPresent, [.. client.Key.ToArray(), .. Encoding.UTF8.GetBytes(client.TailnetId ?? "")]);

    internal void MarkActive(RelayConnection connection)
    {
        if (!_clients.TryGetValue(connection.Key, out var set)) return;
        lock (set) set.Active = connection;
    }

    internal void AddWatcher(RelayConnection watcher)
    {
        _watchers[watcher] = 0;
        // Under each set's lock, as Register and Unregister tell watchers: a departure then comes after this
        // "present", or empties the set before it (see Register).
        foreach (var set in _clients.Values)
            lock (set)
                if (set.Active is { } active) watcher.EnqueueControl(PeerPresent(active));
    }

    internal void ClosePeer(Curve25519PublicKey key)
    {
        foreach (var connection in ConnectionsOf(key)) connection.Close();
    }

    /// <summary>The connections of <paramref name="key"/> here now (a copy, taken under its set's lock).</summary>
    private List<RelayConnection> ConnectionsOf(Curve25519PublicKey key)
    {
        if (!_clients.TryGetValue(key, out var set)) return [];
        lock (set) return [.. set.Connections];
    }

    internal void LearnForwarder(Curve25519PublicKey key, string tailnetId, MeshLink link)
    {
        _forwarders.AddOrUpdate(key, static (_, learned) => [learned], static (_, known, learned) => [.. known.Where(f => f.Link != learned.Link), learned],
            (Link: link, TailnetId: tailnetId));
        // A client here is delivered to before any mesh peer. If it moved to that peer (it roamed, and its old connection's
        // far end is gone without a word), this one swallows its packets until the idle timeout: it must answer, or close.
        foreach (var local in ConnectionsOf(key)) local.ProbeLiveness();
    }

    /// <summary>
    /// <paramref name="link"/>'s relay no longer has <paramref name="key"/> (it left there, or the link broke). When no
    /// relay is left to reach it through and it is not connected here, those that sent to it hear it left, as for a
    /// client of this relay: their entries would otherwise stay for as long as their own connections last.
    /// </summary>
    internal void ForgetForwarder(Curve25519PublicKey key, MeshLink link)
    {
        while (_forwarders.TryGetValue(key, out var known))
        {
            var left = known.RemoveAll(f => f.Link == link);
            if (left.Length == known.Length) return;
            if (!left.IsEmpty)
            {
                if (_forwarders.TryUpdate(key, left, known)) return;
                continue;
            }
            if (!_forwarders.TryRemove(new KeyValuePair<Curve25519PublicKey, ImmutableArray<(MeshLink, string)>>(key, known))) continue;
            if (!_clients.ContainsKey(key)) TellSendersGone(key, RelayFrame.BuildPeerGone(key, PeerGoneReason.Disconnected));
            return;
        }
    }

    internal void ForgetForwardersOf(MeshLink link)
    {
        foreach (var key in _forwarders.Keys) ForgetForwarder(key, link);
    }

    public async ValueTask DisposeAsync()
    {
        _stopping.Cancel();
        _listener.Stop();
        _stun?.Dispose();
        foreach (var link in _meshLinks) await link.DisposeAsync();
        foreach (var set in _clients.Values)
        {
            List<RelayConnection> connections;
            lock (set) connections = [.. set.Connections];
            foreach (var connection in connections) connection.Close();
        }
        try { await Task.WhenAll(_loops).WaitAsync(TimeSpan.FromSeconds(5)); } catch (TimeoutException) { }
    }

    private sealed class ClientSet
    {
        public readonly List<RelayConnection> Connections = [];
        public RelayConnection? Active;
        /// <summary>Out of the registry (its last connection left): a new connection of the key needs a new set.</summary>
        public bool Removed;
    }
}
