using System.Net;
using System.Net.Sockets;
using Weft.Cluster.Tests.Support;
using Weft.NodeAgent.Control;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>Idle connections from one address cannot use up the coordinator: beyond its share they are closed on arrival.</summary>
public class ConnectionLimitTests
{
    private static readonly IPAddress Attacker = IPAddress.Parse("127.0.0.2");

    [Fact]
    public async Task One_address_holds_no_more_than_its_share_of_connections_and_agents_from_elsewhere_still_join()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage,
        [
            new("Weft:Control:Connections:MaxConnections", "50"),
            new("Weft:Control:Connections:MaxConnectionsPerAddress", "3"),
        ]);
        var control = new IPEndPoint(IPAddress.Loopback, node.Control.Port);
        var held = new List<Socket>();
        try
        {
            // Four at once: the server admits them in whatever order its accept loop runs, so which one
            // it closes is not known, only that exactly one is closed and three stay open. On a busy
            // machine the server's reset can even reach the client before its connect completes.
            var attempts = new List<Socket?>();
            for (var i = 0; i < 4; i++) attempts.Add(await TryConnectFrom(Attacker, control));
            var closed = await Task.WhenAll(attempts.Select(socket => socket is null ? Task.FromResult(true) : ClosedByServer(socket, TimeSpan.FromSeconds(3))));
            Assert.Equal(1, closed.Count(c => c));
            for (var i = 0; i < attempts.Count; i++)
            {
                if (closed[i]) attempts[i]?.Dispose();
                else held.Add(attempts[i]!);
            }

            // An agent from another address joins while the limit holds.
            await using var agents = new AgentSystem();
            var tailnet = (await node.Http.CreateTailnet($"limits-{Guid.NewGuid():N}"[..20])).Id;
            var agent = TestAgent.Start(agents, node.Control, "legit", (await node.Http.CreateAuthKey(tailnet)).Key);
            await agent.WaitForState(ControlState.Running);

            // A connection that closes frees its place.
            held[0].Dispose();
            held.RemoveAt(0);
            await Eventually.Until(async () =>
            {
                try
                {
                    using var again = await ConnectFrom(Attacker, control);
                    return !await ClosedByServer(again, TimeSpan.FromMilliseconds(300));
                }
                catch (SocketException)
                {
                    return false; // still refused, so fast that the connect itself saw the reset
                }
            }, admitted => admitted, "a connection from that address is admitted again");
        }
        finally
        {
            foreach (var socket in held) socket.Dispose();
        }
    }

    /// <summary>A connected socket, or null when the server reset the connection before the connect completed.</summary>
    private static async Task<Socket?> TryConnectFrom(IPAddress source, IPEndPoint target)
    {
        try
        {
            return await ConnectFrom(source, target);
        }
        catch (SocketException error) when (error.SocketErrorCode == SocketError.ConnectionReset)
        {
            return null;
        }
    }

    private static async Task<Socket> ConnectFrom(IPAddress source, IPEndPoint target)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(new IPEndPoint(source, 0));
            await socket.ConnectAsync(target);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>True when the server closes or resets the connection within <paramref name="within"/>.</summary>
    private static async Task<bool> ClosedByServer(Socket socket, TimeSpan within)
    {
        using var timeout = new CancellationTokenSource(within);
        try
        {
            return await socket.ReceiveAsync(new byte[64], SocketFlags.None, timeout.Token) == 0;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (SocketException)
        {
            return true;
        }
    }
}
