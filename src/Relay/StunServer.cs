using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Weft.Contracts.Stun;

namespace Weft.Relay;

/// <summary>
/// The region's STUN server (RFC 5389 Binding): it answers each binding request with the address
/// and port the request came from, as XOR-MAPPED-ADDRESS. Anything else is counted and ignored;
/// nothing it receives can stop it.
/// </summary>
public sealed class StunServer : IDisposable
{
    private readonly Socket _socket;
    private readonly RelayCounters _counters;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stopping = new();
    private Task _loop = Task.CompletedTask;

    public StunServer(IPEndPoint listen, RelayCounters counters, ILogger log)
    {
        _counters = counters;
        _log = log;
        _socket = new Socket(listen.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        if (listen.AddressFamily == AddressFamily.InterNetworkV6) _socket.DualMode = true;
        _socket.Bind(listen);
    }

    public IPEndPoint LocalEndpoint => (IPEndPoint)_socket.LocalEndPoint!;

    public void Start() => _loop = Task.Run(LoopAsync);

    private async Task LoopAsync()
    {
        var buffer = new byte[2048];
        EndPoint any = new IPEndPoint(_socket.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0);
        while (!_stopping.IsCancellationRequested)
        {
            SocketReceiveFromResult received;
            try { received = await _socket.ReceiveFromAsync(buffer, SocketFlags.None, any, _stopping.Token); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException) { return; }
            catch (SocketException) { continue; } // ICMP errors from earlier replies surface here
            var from = (IPEndPoint)received.RemoteEndPoint;
            var request = buffer.AsSpan(0, received.ReceivedBytes);
            var mapped = from.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(from.Address.MapToIPv4(), from.Port) : from;
            byte[] reply;
            var error = StunMessage.TryReadBindingRequest(request, out var transaction);
            if (error == StunError.None) reply = StunMessage.BindingResponseFor(transaction, mapped);
            else if (error == StunError.NotStun && StunMessage.TryReadClassicBindingRequest(request, out var classic) == StunError.None)
                reply = StunMessage.ClassicBindingResponseFor(classic, mapped);
            else
            {
                _counters.Refused("stun_" + error.ToString().ToLowerInvariant());
                continue;
            }
            try
            {
                await _socket.SendToAsync(reply, SocketFlags.None, from, _stopping.Token);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
            {
                _log.LogDebug("STUN reply to {From} failed: {Error}", from, e.Message);
            }
        }
    }

    public void Dispose()
    {
        _stopping.Cancel();
        _socket.Dispose();
        try { _loop.Wait(TimeSpan.FromSeconds(2)); } catch (AggregateException) { }
    }
}
