using System.Net.Sockets;
using System.Text;
using Weft.NodeAgent.Net;

namespace Weft.NodeAgent.Tests.Net;

/// <summary>
/// The local control socket (the standalone UAPI socket) must outlive a failed accept: a process out
/// of descriptors (EMFILE) fails accepts until connections close, and the socket must serve again then.
/// </summary>
public sealed class UnixSocketServerTests : IDisposable
{
    private const int EMFILE = 24;
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);
    private readonly string _directory = Directory.CreateTempSubdirectory("weft-sock-").FullName;

    /// <summary>Answers each line with the same line, upper-cased.</summary>
    private static async Task Echo(Socket connection, CancellationToken stop)
    {
        await using var stream = new NetworkStream(connection, ownsSocket: false);
        using var reader = new StreamReader(stream);
        await using var writer = new StreamWriter(stream) { AutoFlush = true, NewLine = "\n" };
        while (await reader.ReadLineAsync(stop) is { } line) await writer.WriteLineAsync(line.ToUpperInvariant());
    }

    private static async Task<string?> AskAsync(string path, string line)
    {
        using var limit = new CancellationTokenSource(Limit);
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(path), limit.Token);
        await using var stream = new NetworkStream(client);
        await stream.WriteAsync(Encoding.UTF8.GetBytes(line + "\n"), limit.Token);
        using var reader = new StreamReader(stream);
        return await reader.ReadLineAsync(limit.Token);
    }

    [Fact]
    public async Task Accepts_that_fail_for_want_of_descriptors_are_retried_and_the_socket_serves_after_them()
    {
        // The real accept, failing its first two calls the way a process out of descriptors does.
        var failuresLeft = 2;
        var server = new UnixSocketServer(Path.Combine(_directory, "ctl.sock"), UnixFileMode.UserRead | UnixFileMode.UserWrite, Echo,
            accept: (listener, stop) => Interlocked.Decrement(ref failuresLeft) >= 0
                ? ValueTask.FromException<Socket>(new SocketException(EMFILE))
                : listener.AcceptAsync(stop));
        using var _ = server;

        Assert.Equal("HELLO", await AskAsync(server.Path, "hello"));
        Assert.Equal(2, server.AcceptFailures);
        Assert.Equal("AGAIN", await AskAsync(server.Path, "again"));
    }

    [Fact]
    public async Task A_disposed_server_stops_accepting_and_removes_its_socket_file()
    {
        var server = new UnixSocketServer(Path.Combine(_directory, "ctl.sock"), UnixFileMode.UserRead | UnixFileMode.UserWrite, Echo);
        Assert.Equal("UP", await AskAsync(server.Path, "up"));

        server.Dispose();

        Assert.False(File.Exists(server.Path));
        Assert.Equal(0, server.AcceptFailures);
        await Assert.ThrowsAsync<SocketException>(() => AskAsync(server.Path, "down"));
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
