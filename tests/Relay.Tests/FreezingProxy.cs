using System.Net;
using System.Net.Sockets;

namespace Weft.Relay.Tests;

/// <summary>
/// A loopback TCP proxy in front of a relay. <see cref="Freeze"/> stops every connection it carries in
/// both directions without closing any (a peer whose host died, or a path that went dark: nothing
/// arrives, and no FIN or RST either); connections made after that flow normally, as to a peer that came back.
/// </summary>
internal sealed class FreezingProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<(TcpClient Inbound, TcpClient Outbound, CancellationTokenSource Pumping)> _carried = [];
    private readonly Task _accepting;
    private int _accepted;

    public FreezingProxy(IPEndPoint target)
    {
        _target = target;
        _listener.Start();
        _accepting = Task.Run(AcceptAsync);
    }

    public RelayNodeAddress Address => new("127.0.0.1", ((IPEndPoint)_listener.LocalEndpoint).Port);

    /// <summary>Connections taken so far.</summary>
    public int Accepted => Volatile.Read(ref _accepted);

    public void Freeze()
    {
        lock (_carried)
            foreach (var (_, _, pumping) in _carried) pumping.Cancel();
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            var outbound = new TcpClient();
            await outbound.ConnectAsync(_target);
            var pumping = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            lock (_carried) _carried.Add((inbound, outbound, pumping));
            Interlocked.Increment(ref _accepted);
            _ = Pump(inbound.GetStream(), outbound.GetStream(), pumping.Token);
            _ = Pump(outbound.GetStream(), inbound.GetStream(), pumping.Token);
        }
    }

    private static async Task Pump(NetworkStream from, NetworkStream to, CancellationToken frozen)
    {
        try
        {
            await from.CopyToAsync(to, frozen);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        lock (_carried)
            foreach (var (inbound, outbound, pumping) in _carried)
            {
                inbound.Dispose();
                outbound.Dispose();
                pumping.Dispose();
            }
    }
}
