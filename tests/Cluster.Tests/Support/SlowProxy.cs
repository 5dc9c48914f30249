using System.Net;
using System.Net.Sockets;

namespace Weft.Cluster.Tests.Support;

/// <summary>
/// A TCP proxy on loopback that waits <c>delay</c> before it connects each accepted client to its upstream, then
/// copies bytes both ways: a coordinator that is slow to answer a dial (far away, overloaded), however fast the real one is.
/// </summary>
public sealed class SlowProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<TcpClient> _open = [];
    private readonly Task _accepting;

    public SlowProxy(Uri upstream, TimeSpan delay)
    {
        _listener.Start();
        Url = new Uri($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/");
        _accepting = AcceptAsync(upstream, delay);
    }

    public Uri Url { get; }

    private int _accepted;

    /// <summary>Connections accepted so far (each is then held for the delay).</summary>
    public int Accepted => Volatile.Read(ref _accepted);

    private async Task AcceptAsync(Uri upstream, TimeSpan delay)
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                lock (_open) _open.Add(client);
                Interlocked.Increment(ref _accepted);
                _serving.Add(ServeAsync(client, upstream, delay));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private readonly System.Collections.Concurrent.ConcurrentBag<Task> _serving = [];

    private async Task ServeAsync(TcpClient client, Uri upstream, TimeSpan delay)
    {
        using var server = new TcpClient();
        try
        {
            await Task.Delay(delay, _stop.Token);
            await server.ConnectAsync(upstream.Host, upstream.Port, _stop.Token);
            var there = server.GetStream();
            var here = client.GetStream();
            // Either side closing ends both (the other copy then fails on its disposed socket, which is expected).
            var copies = new[] { here.CopyToAsync(there, _stop.Token), there.CopyToAsync(here, _stop.Token) };
            await Task.WhenAny(copies);
            client.Dispose();
            server.Dispose();
            await Task.WhenAll(copies).ContinueWith(_ => { }, TaskScheduler.Default);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            client.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        lock (_open)
            foreach (var connection in _open) connection.Dispose();
        await _accepting;
        await Task.WhenAll(_serving);
        _stop.Dispose();
    }
}
