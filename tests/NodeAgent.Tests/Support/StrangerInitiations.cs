using System.Net;
using System.Net.Sockets;
using Weft.Contracts.Keys;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Support;

/// <summary>
/// Handshake initiations from keys the engine does not know, each with a valid mac1 for its key
/// (anyone who knows a public key can make them), sent to its UDP port from a thread of their own
/// until disposed: as fast as the socket goes, or one per <c>pause</c>.
/// </summary>
public sealed class StrangerInitiations : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _sender;
    private long _sent;

    public StrangerInitiations(EngineNode target, int distinct, TimeSpan? pause = null)
    {
        var messages = Make(target.Key.PublicKey, distinct);
        var port = target.Device.ListenPort;
        _sender = new Thread(() =>
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            var endpoint = new IPEndPoint(IPAddress.Loopback, port);
            for (var i = 0; !_stop.IsCancellationRequested; i++)
            {
                socket.SendTo(messages[i % messages.Length], endpoint);
                Interlocked.Increment(ref _sent);
                if (pause is { } wait) Thread.Sleep(wait);
            }
        }) { IsBackground = true };
        _sender.Start();
    }

    public long Sent => Interlocked.Read(ref _sent);

    private static byte[][] Make(Curve25519PublicKey target, int count)
    {
        var targetView = new Peer(target, new IndexTable());
        return Enumerable.Range(0, count).Select(_ =>
        {
            var message = new byte[Messages.InitiationSize];
            using var stranger = Curve25519PrivateKey.Generate();
            Handshake.CreateInitiation(stranger, targetView, new IndexTable(), EngineClock.System, message).Dispose();
            return message;
        }).ToArray();
    }

    /// <summary>Stops sending; once it returns, nothing more is sent.</summary>
    public void Stop()
    {
        _stop.Cancel();
        _sender.Join();
    }

    public void Dispose()
    {
        Stop();
        _stop.Dispose();
    }
}
