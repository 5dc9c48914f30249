using System.Net;
using System.Net.NetworkInformation;
using Microsoft.Extensions.Logging;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay;

/// <summary>
/// This relay's watch on one other relay of its region: a client connection that proves the mesh
/// key, asks for WatchConns, and learns from PeerPresent/PeerGone which node keys are there. Packets
/// for those keys go to it as ForwardPacket. It pings the peer, and a peer that answers nothing for
/// three pings counts as gone. When the link breaks, everything learned from it is
/// forgotten at once (packets for those keys are dropped rather than sent into a dead link), and
/// it dials again every few seconds; the new watch floods the current clients again.
/// <para>
/// A peer that is this relay itself (its host resolves to one of this machine's addresses, on this
/// relay's port) is skipped, as derper's <c>--mesh-with</c> skips its own name: every relay of a region
/// can then be given the same list (one ConfigMap for every pod of a StatefulSet).
/// </para>
/// </summary>
internal sealed class MeshLink(RelayServer server, RelayNodeAddress peer) : IAsyncDisposable
{
    private RelayClientConnection? _client;
    private Task _loop = Task.CompletedTask;

    public RelayNodeAddress Peer => peer;

    public void Start(CancellationToken stopping) => _loop = Task.Run(() => RunAsync(stopping));

    public bool TryForward(Curve25519PublicKey source, Curve25519PublicKey destination, ReadOnlySpan<byte> packet) =>
        _client is { IsClosed: false } client && client.TryForward(source, destination, packet);

    /// <summary>Failed dials in a row after which an unreachable peer is worth a warning.</summary>
    private const int UnreachableWarningAfter = 6;

    /// <summary>
    /// How often the link pings its peer: a quarter of the shorter of the keepalive interval and the idle
    /// timeout (15 s by default, as the agents' relay clients). The peer cuts a connection it has heard
    /// nothing on for its idle timeout, mesh links included, and a link with no packet to forward says
    /// nothing else: before the pings, every quiet link was cut every two minutes and its peer's clients
    /// were unreachable from here until it was dialled again.
    /// </summary>
    private TimeSpan PingInterval => (server.Options.KeepAliveInterval < server.Options.IdleTimeout ? server.Options.KeepAliveInterval : server.Options.IdleTimeout) / 4;

    private async Task RunAsync(CancellationToken stopping)
    {
        var info = new ClientInfo { MeshKey = server.Options.MeshKey };
        var failures = 0;
        var selfChecks = 0;
        while (!stopping.IsCancellationRequested)
        {
            if (await IsThisRelayAsync(stopping))
            {
                // An address names this relay for good; a name may name another later (a headless service's stale answer,
                // an address given to another pod, a floating address that moved): it is looked up again, and dialled then.
                var literal = IPAddress.TryParse(peer.Host, out _);
                server.Log.Log(selfChecks++ == 0 ? LogLevel.Information : LogLevel.Debug,
                    literal ? "Mesh peer {Peer} is this relay; not dialled" : "Mesh peer {Peer} names this relay now; not dialled, and looked up again every {Retry} s",
                    peer, server.Options.MeshRetryInterval.TotalSeconds);
                if (literal) return;
                try { await Task.Delay(server.Options.MeshRetryInterval, stopping); }
                catch (OperationCanceledException) { return; }
                continue;
            }
            using var alive = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            var keepingAlive = Task.CompletedTask;
            try
            {
                var client = await RelayClientConnection.ConnectAsync(peer, server.Options.ServerKey, info, stopping);
                _client = client;
                failures = 0;
                server.Log.LogInformation("Mesh link to {Peer} is up", peer);
                keepingAlive = KeepAliveAsync(client, alive);
                client.TrySendFrame(RelayFrame.Build(RelayFrameType.WatchConns, []));
                while (await client.ReadAsync(alive.Token) is { } frame)
                {
                    if (frame.Payload.Length < RelayFrame.KeySize) continue;
                    var key = new Curve25519PublicKey(frame.Payload.AsSpan(0, RelayFrame.KeySize));
                    if (frame.Type == RelayFrameType.PeerPresent)
                        server.LearnForwarder(key, System.Text.Encoding.UTF8.GetString(frame.Payload.AsSpan(RelayFrame.KeySize)), this);
                    else if (frame.Type == RelayFrameType.PeerGone) server.ForgetForwarder(key, this);
                }
                server.Log.LogWarning("Mesh link to {Peer} broke; retrying", peer);
            }
            // Stopping: the read ends cancelled, or on the stream DisposeAsync closed under it (a race).
            catch (Exception) when (stopping.IsCancellationRequested)
            {
                return;
            }
            // Whatever failed, the link is dialled again: a certificate the TLS check refused (a peer mid-renewal),
            // an answer that did not parse. A link that gave up on the first unexpected error left the region split
            // until this relay restarted, and with nothing in the log.
            catch (Exception e) when (!stopping.IsCancellationRequested)
            {
                // A refused login (the mesh keys differ: the region stays split until that is mended), a refused
                // certificate and a peer gone silent say so at Warning, once per streak, as does a peer still
                // unreachable after six tries (30 s by default); a peer not up yet (the region's relays starting one
                // after another) is only a Debug line.
                var silent = alive.IsCancellationRequested;
                var streak = ++failures;
                var unreachable = !silent && e is IOException or System.Net.Sockets.SocketException or OperationCanceledException;
                var level = (streak == 1 && !unreachable) || streak == UnreachableWarningAfter ? LogLevel.Warning : LogLevel.Debug;
                server.Log.Log(level, "Mesh link to {Peer} failed ({Attempts} attempt(s) in a row): {Error}; dialling again every {Retry} s", peer, streak,
                    silent ? "it went silent (no keepalive or pong)" : e.Message, server.Options.MeshRetryInterval.TotalSeconds);
            }
            finally
            {
                await alive.CancelAsync();
                await keepingAlive;
                server.ForgetForwardersOf(this);
                if (_client is { } dead) { _client = null; await dead.DisposeAsync(); }
            }
            try { await Task.Delay(server.Options.MeshRetryInterval, stopping); }
            catch (OperationCanceledException) { return; }
        }
    }

    /// <summary>Whether <see cref="Peer"/> names this relay: its port, and an address of this machine it listens on. A name that does not resolve (yet) is not.</summary>
    private async Task<bool> IsThisRelayAsync(CancellationToken stopping)
    {
        var listening = server.LocalEndpoint;
        if (peer.Port != listening.Port) return false;
        IPAddress[] resolved;
        try
        {
            resolved = IPAddress.TryParse(peer.Host, out var literal) ? [literal] : await server.Options.ResolveHost(peer.Host, stopping);
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or ArgumentException or OperationCanceledException)
        {
            return false;
        }
        var own = listening.Address.Equals(IPAddress.Any) || listening.Address.Equals(IPAddress.IPv6Any)
            ? NetworkInterface.GetAllNetworkInterfaces().SelectMany(nic => nic.GetIPProperties().UnicastAddresses.Select(u => u.Address)).ToHashSet()
            : [listening.Address];
        return resolved.Select(a => a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a).Any(own.Contains);
    }

    /// <summary>
    /// Pings the peer every <see cref="PingInterval"/>, and ends the link (cancels <paramref name="alive"/>) when
    /// nothing at all, not even a pong, came for three of them: a peer whose host died or was cut off without
    /// closing the connection would otherwise keep its clients' packets going into a dead link for as long
    /// as TCP takes to give up (many minutes).
    /// </summary>
    private async Task KeepAliveAsync(RelayClientConnection client, CancellationTokenSource alive)
    {
        var interval = PingInterval;
        var ping = new byte[RelayFrame.PingSize];
        try
        {
            while (true)
            {
                await Task.Delay(interval, alive.Token);
                if (client.SilentMs > 3 * interval.TotalMilliseconds)
                {
                    await alive.CancelAsync();
                    return;
                }
                System.Security.Cryptography.RandomNumberGenerator.Fill(ping);
                client.TrySendFrame(RelayFrame.Build(RelayFrameType.Ping, ping));
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_client is { } client) await client.DisposeAsync();
        try { await _loop.WaitAsync(TimeSpan.FromSeconds(5)); }
        catch (Exception e) when (e is not TimeoutException)
        {
            server.Log.LogWarning("Mesh link to {Peer} ended with an error: {Error}", peer, e.Message); // the relay's own shutdown goes on
        }
        catch (TimeoutException)
        {
        }
    }
}
