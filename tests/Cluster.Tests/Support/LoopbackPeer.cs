using System.Net;
using System.Net.Sockets;

namespace Weft.Cluster.Tests.Support;

/// <summary>
/// A stand-in for another cluster node on a loopback port. Each connection it takes goes to its serve
/// function and is closed when that returns. Disposing it stops taking connections.
/// </summary>
public sealed class LoopbackPeer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private int _handshakesCut;

    private LoopbackPeer(Func<LoopbackPeer, TcpClient, CancellationToken, Task> serve)
    {
        _listener.Start();
        _accepting = Task.Run(() => Accept(serve));
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>How many connections began a TLS handshake that this peer then cut off (see <see cref="CuttingHandshakes"/>).</summary>
    public int HandshakesCut => Volatile.Read(ref _handshakesCut);

    /// <summary>
    /// A node in its last moment: it takes each connection, reads the start of the TLS handshake and
    /// hangs up, as a node going down does to a connection that reached it just then.
    /// </summary>
    public static LoopbackPeer CuttingHandshakes() => new(async (peer, connection, stop) =>
    {
        var hello = new byte[512];
        if (await connection.GetStream().ReadAsync(hello, stop) > 0 && hello[0] == 0x16) Interlocked.Increment(ref peer._handshakesCut); // a TLS handshake record
    });

    /// <summary>A peer that does with each connection what <paramref name="serve"/> does.</summary>
    public static LoopbackPeer Serving(Func<TcpClient, CancellationToken, Task> serve) => new((_, connection, stop) => serve(connection, stop));

    private async Task Accept(Func<LoopbackPeer, TcpClient, CancellationToken, Task> serve)
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient connection;
            try
            {
                connection = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            _ = Task.Run(async () =>
            {
                using (connection)
                {
                    try
                    {
                        await serve(this, connection, _stop.Token);
                    }
                    catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException)
                    {
                        // the other end went away, or the peer stops
                    }
                }
            });
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await Task.WhenAny(_accepting, Task.Delay(TimeSpan.FromSeconds(5)));
    }
}
