using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Support;

/// <summary>
/// A UDP relay in front of <paramref name="target"/>: whatever others send to it goes to the target
/// and is recorded (for replay tests); whatever the target sends back goes to whoever spoke last.
/// </summary>
public sealed class UdpTap : IDisposable
{
    private readonly UdpClient _socket = new(new IPEndPoint(IPAddress.Loopback, 0));
    private readonly IPEndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private IPEndPoint? _client;

    public UdpTap(Endpoint target)
    {
        _target = target.Address;
        _ = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    var received = await _socket.ReceiveAsync(_stop.Token);
                    if (received.RemoteEndPoint.Equals(_target))
                    {
                        if (_client is not null) await _socket.SendAsync(received.Buffer, _client);
                        continue;
                    }
                    _client = received.RemoteEndPoint;
                    Recorded.Enqueue(received.Buffer);
                    await _socket.SendAsync(received.Buffer, _target);
                }
                catch (Exception) when (_stop.IsCancellationRequested) { return; }
                catch (SocketException) { }
            }
        });
    }

    public Endpoint Endpoint => new((IPEndPoint)_socket.Client.LocalEndPoint!);

    public ConcurrentQueue<byte[]> Recorded { get; } = new();

    /// <summary>Sends raw bytes to the target, as if from the tap's address.</summary>
    public void Inject(byte[] datagram) => _socket.Send(datagram, _target);

    public void Dispose()
    {
        _stop.Cancel();
        _socket.Dispose();
    }
}
