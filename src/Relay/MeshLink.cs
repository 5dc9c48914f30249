using Microsoft.Extensions.Logging;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay;

/// <summary>
/// This relay's watch on one other relay of its region: a client connection that proves the mesh
/// key, asks for WatchConns, and learns from PeerPresent/PeerGone which node keys are there. Packets
/// for those keys go to it as ForwardPacket. When the link breaks, everything learned from it is
/// forgotten at once (packets for those keys are dropped rather than sent into a dead link), and
/// it dials again every few seconds; the new watch floods the current clients again.
/// </summary>
internal sealed class MeshLink(RelayServer server, RelayNodeAddress peer) : IAsyncDisposable
{
    private RelayClientConnection? _client;
    private Task _loop = Task.CompletedTask;

    public RelayNodeAddress Peer => peer;

    public void Start(CancellationToken stopping) => _loop = Task.Run(() => RunAsync(stopping));

    public bool TryForward(Curve25519PublicKey source, Curve25519PublicKey destination, ReadOnlySpan<byte> packet) =>
        _client is { IsClosed: false } client && client.TryForward(source, destination, packet);

    private async Task RunAsync(CancellationToken stopping)
    {
        var info = new ClientInfo { MeshKey = server.Options.MeshKey };
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                var client = await RelayClientConnection.ConnectAsync(peer, server.Options.ServerKey, info, stopping);
                _client = client;
                server.Log.LogInformation("Mesh link to {Peer} is up", peer);
                client.TrySendFrame(RelayFrame.Build(RelayFrameType.WatchConns, []));
                while (await client.ReadAsync(stopping) is { } frame)
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
            catch (Exception e) when (stopping.IsCancellationRequested && e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or RelayProtocolException or OperationCanceledException)
            {
                server.Log.LogDebug("Mesh link to {Peer} failed: {Error}", peer, e.Message);
            }
            finally
            {
                server.ForgetForwardersOf(this);
                if (_client is { } dead) { _client = null; await dead.DisposeAsync(); }
            }
            try { await Task.Delay(server.Options.MeshRetryInterval, stopping); }
            catch (OperationCanceledException) { return; }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_client is { } client) await client.DisposeAsync();
        try { await _loop.WaitAsync(TimeSpan.FromSeconds(5)); } catch (Exception e) when (e is TimeoutException or OperationCanceledException) { }
    }
}
