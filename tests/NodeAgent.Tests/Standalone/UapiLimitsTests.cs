using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.Standalone;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Standalone;

/// <summary>The UAPI socket reads bounded lines: an over-long one ends the connection, and the server goes on serving.</summary>
public sealed class UapiLimitsTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("weft-uapi-").FullName;
    private readonly WireGuardDevice _device = new(new VirtualTun("uapi0"), UdpTransport.Bind(0));
    private readonly UapiServer _server;

    public UapiLimitsTests()
    {
        _server = new UapiServer("uapi0", _device, CreateTestProbe().Ref, NullLogger.Instance, _directory);
    }

    private async Task<string> Exchange(string request)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(_server.SocketPath));
        await socket.SendAsync(Encoding.UTF8.GetBytes(request));
        socket.Shutdown(SocketShutdown.Send);
        var answer = new MemoryStream();
        var buffer = new byte[4096];
        int read;
        while ((read = await socket.ReceiveAsync(buffer)) > 0) answer.Write(buffer, 0, read);
        return Encoding.UTF8.GetString(answer.ToArray());
    }

    [Fact]
    public async Task A_line_longer_than_the_limit_ends_the_connection_unanswered_and_a_normal_request_is_served_after_it()
    {
        var tooLong = await Exchange("set=1\nprivate_key=" + new string('a', UapiServer.MaxLineLength) + "\n\n");
        Assert.Equal("", tooLong);

        var served = await Exchange("get=1\n\n");
        Assert.EndsWith("errno=0\n\n", served);
    }

    public new void Dispose()
    {
        _server.Dispose();
        _device.Dispose();
        Directory.Delete(_directory, recursive: true);
        base.Dispose();
    }
}
