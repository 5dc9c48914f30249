using System.Net;
using System.Net.Sockets;
using System.Text;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>Idle and slow clients do not keep connections on either listener (short timeouts here; 30 s and 10 s by default).</summary>
public class ListenerTimeoutTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static async Task<Socket> Connect(Uri listener)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, listener.Port));
        return socket;
    }

    /// <summary>Reads until the server closes the connection; true if it did within <see cref="Patience"/>.</summary>
    private static async Task<bool> ServerCloses(Socket socket)
    {
        using var timeout = new CancellationTokenSource(Patience);
        var buffer = new byte[4096];
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) > 0) { }
            return true;
        }
        catch (SocketException)
        {
            return true; // reset
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    [Fact]
    public async Task Idle_connections_and_requests_that_never_finish_their_headers_are_closed_on_both_listeners()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage,
        [
            new("Weft:Listeners:IdleTimeoutSeconds", "2"),
            new("Weft:Listeners:RequestHeadersTimeoutSeconds", "2"),
        ]);

        // Admin listener: a kept-alive connection after one answered request...
        using (var idle = await Connect(node.Api))
        {
            await idle.SendAsync(Encoding.ASCII.GetBytes($"GET /healthz HTTP/1.1\r\nHost: {node.Api.Authority}\r\n\r\n"));
            Assert.True(await ServerCloses(idle), "an idle keep-alive connection stayed open");
        }
        // ...and a request whose headers never end.
        using (var slow = await Connect(node.Api))
        {
            await slow.SendAsync(Encoding.ASCII.GetBytes($"GET /healthz HTTP/1.1\r\nHost: {node.Api.Authority}\r\nX-Slow: "));
            Assert.True(await ServerCloses(slow), "a request with unfinished headers kept its connection");
        }
        // Control listener (HTTP/2): a connection that sends nothing, and one that sends only the preface.
        using (var silent = await Connect(node.Control))
            Assert.True(await ServerCloses(silent), "a silent control connection stayed open");
        using (var preface = await Connect(node.Control))
        {
            await preface.SendAsync(Encoding.ASCII.GetBytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
            await preface.SendAsync(new byte[] { 0, 0, 0, 4, 0, 0, 0, 0, 0 }); // an empty SETTINGS frame
            Assert.True(await ServerCloses(preface), "an HTTP/2 connection with no stream stayed open");
        }
    }
}
