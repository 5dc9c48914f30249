using System.Net.Sockets;

namespace Weft.NodeAgent.Net;

/// <summary>
/// A local control socket: binds a unix stream socket (replacing one left by a process that died),
/// restricts it to its owner, and hands each connection to <c>serve</c> until disposed.
/// </summary>
public sealed class UnixSocketServer : IDisposable
{
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly CancellationTokenSource _stop = new();
    private readonly Func<Socket, CancellationToken, Task> _serve;

    public UnixSocketServer(string path, UnixFileMode mode, Func<Socket, CancellationToken, Task> serve)
    {
        Path = path;
        _serve = serve;
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        if (File.Exists(path)) File.Delete(path);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        File.SetUnixFileMode(path, mode);
        _listener.Listen(16);
        _ = AcceptLoop();
    }

    public string Path { get; }

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            _ = ServeOne(connection);
        }
    }

    private async Task ServeOne(Socket connection)
    {
        using var _ = connection;
        try
        {
            await _serve(connection, _stop.Token);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
        {
            // The client went away, or we are stopping.
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        try
        {
            File.Delete(Path);
        }
        catch (IOException)
        {
        }
    }
}
