using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Weft.Lab;

/// <summary>
/// A recursive resolver as a lab machine's network would have one: a UDP DNS server on a lab
/// address that knows one name (an A record) and answers NXDOMAIN for the rest. Enough to show
/// that a query went where it should.
/// </summary>
public sealed class LabDnsServer : IDisposable
{
    private readonly UdpClient _socket;
    private readonly string _name;
    private readonly IPAddress _address;
    private readonly CancellationTokenSource _stop = new();
    private int _asked;

    private LabDnsServer(IPEndPoint listen, string name, IPAddress address)
    {
        _socket = new UdpClient(listen);
        _name = name.TrimEnd('.');
        _address = address;
        _ = Serve();
    }

    /// <summary>How many queries it has had.</summary>
    public int Asked => Volatile.Read(ref _asked);

    public static LabDnsServer Start(IPEndPoint listen, string name, string address) => new(listen, name, IPAddress.Parse(address));

    private async Task Serve()
    {
        while (!_stop.IsCancellationRequested)
        {
            UdpReceiveResult query;
            try
            {
                query = await _socket.ReceiveAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }
            Interlocked.Increment(ref _asked);
            if (Answer(query.Buffer) is { } answer) await _socket.SendAsync(answer, query.RemoteEndPoint);
        }
    }

    private byte[]? Answer(byte[] query)
    {
        if (query.Length < 17) return null;
        var (name, end) = ReadName(query, 12);
        if (name is null || end + 4 > query.Length) return null;
        var type = query[end] << 8 | query[end + 1];
        var known = string.Equals(name, _name, StringComparison.OrdinalIgnoreCase);
        var answers = known && type == 1 ? 1 : 0;
        var response = new List<byte> { query[0], query[1], 0x81, (byte)(0x80 | (known ? 0 : 3)), 0, 1, 0, (byte)answers, 0, 0, 0, 0 };
        response.AddRange(query.AsSpan(12, end + 4 - 12).ToArray());
        if (answers == 1) response.AddRange([0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, .. _address.GetAddressBytes()]);
        return [.. response];
    }

    private static (string? Name, int End) ReadName(byte[] message, int offset)
    {
        var labels = new List<string>();
        while (offset < message.Length)
        {
            int length = message[offset++];
            if (length == 0) return (string.Join('.', labels), offset);
            if (length > 63 || offset + length > message.Length) return (null, offset);
            labels.Add(Encoding.ASCII.GetString(message, offset, length));
            offset += length;
        }
        return (null, offset);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _socket.Dispose();
    }
}
