using System.Net;
using System.Net.Sockets;
using Weft.Contracts.Stun;

namespace Weft.NodeAgent.Tests.Support;

/// <summary>
/// A STUN server on a loopback UDP socket that answers every binding request at once, with the
/// address it came from, until disposed. It counts the requests it answered.
/// </summary>
public sealed class LoopbackStunServer : IAsyncDisposable
{
    private readonly UdpClient _socket = new(new IPEndPoint(IPAddress.Loopback, 0));
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _answering;
    private int _answered;

    public LoopbackStunServer()
    {
        Port = ((IPEndPoint)_socket.Client.LocalEndPoint!).Port;
        _answering = Task.Run(AnswerAsync);
    }

    public int Port { get; }

    public int Answered => Volatile.Read(ref _answered);

    private async Task AnswerAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            var request = await _socket.ReceiveAsync(_stop.Token);
            if (StunMessage.TryReadBindingRequest(request.Buffer, out var transaction) != StunError.None) continue;
            // Counted before it is sent: a client that has the answer may read the count at once.
            Interlocked.Increment(ref _answered);
            await _socket.SendAsync(StunMessage.BindingResponseFor(transaction, request.RemoteEndPoint), request.RemoteEndPoint, _stop.Token);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _answering;
        }
        catch (OperationCanceledException)
        {
            // it was waiting for the next request
        }
        _socket.Dispose();
        _stop.Dispose();
    }
}
