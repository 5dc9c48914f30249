using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Weft.NodeAgent.Net;

/// <summary>
/// A local control socket: binds a unix stream socket (replacing one left by a process that died),
/// restricts it to its owner, and hands each connection to <c>serve</c> until disposed. A failed
/// accept (out of descriptors, a client that left first) does not end it: it accepts again after a pause.
/// </summary>
public sealed class UnixSocketServer : IDisposable
{
    private static readonly TimeSpan FirstPause = TimeSpan.FromMilliseconds(100), LongestPause = TimeSpan.FromSeconds(5);
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly CancellationTokenSource _stop = new();
    private readonly Func<Socket, CancellationToken, Task> _serve;
    private readonly Func<Socket, CancellationToken, ValueTask<Socket>> _accept;
    private readonly ILogger _log;
    private long _acceptFailures;

    /// <param name="accept">How a connection is taken from the listener (tests wrap the real accept to make it fail).</param>
    public UnixSocketServer(string path, UnixFileMode mode, Func<Socket, CancellationToken, Task> serve, ILogger? log = null,
        Func<Socket, CancellationToken, ValueTask<Socket>>? accept = null)
    {
        Path = path;
        _serve = serve;
        _log = log ?? NullLogger.Instance;
        _accept = accept ?? ((listener, stop) => listener.AcceptAsync(stop));
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        if (File.Exists(path)) File.Delete(path);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        File.SetUnixFileMode(path, mode);
        _listener.Listen(16);
        _ = AcceptLoop();
    }

    public string Path { get; }

    /// <summary>Accepts that failed while the server ran; each was followed by a pause and another accept.</summary>
    public long AcceptFailures => Interlocked.Read(ref _acceptFailures);

    private async Task AcceptLoop()
    {
        var failuresInARow = 0;
        while (!_stop.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await _accept(_listener, _stop.Token);
                failuresInARow = 0;
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // EMFILE or ENFILE most often: the listener is still good, and descriptors come back as
                // connections close. Pausing keeps a failure that lasts from spinning.
                Interlocked.Increment(ref _acceptFailures);
                var pause = RetryPause.Doubling(FirstPause, LongestPause, failuresInARow++);
                _log.LogWarning("Accepting on {Path} failed ({Error}); accepting again in {Pause} ms", Path, e.Message, (int)pause.TotalMilliseconds);
                try
                {
                    await Task.Delay(pause, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
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
