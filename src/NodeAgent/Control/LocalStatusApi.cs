using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Weft.NodeAgent.Net;

namespace Weft.NodeAgent.Control;

/// <summary>
/// The running agent's local API, for <c>weft-agent status</c>: a unix socket (mode 0600) next to
/// the state file. A client writes one command line (<c>status</c>) and reads one JSON document.
/// </summary>
public sealed class LocalStatusApi : IDisposable
{
    public const string SocketName = "weft-agent.sock";
    private const int MaxCommandBytes = 256;
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(5);

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    };

    private readonly IActorRef _client;
    private readonly UnixSocketServer _socket;

    public LocalStatusApi(string stateDirectory, IActorRef controlClient)
    {
        _client = controlClient;
        _socket = new UnixSocketServer(Path.Combine(stateDirectory, SocketName), UnixFileMode.UserRead | UnixFileMode.UserWrite, Serve);
    }

    public string SocketPath => _socket.Path;

    private async Task Serve(Socket connection, CancellationToken stop)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
        timeout.CancelAfter(AskTimeout);
        var command = await ReadLine(connection, timeout.Token);
        object reply;
        try
        {
            reply = command switch
            {
                "status" => await _client.Ask<AgentStatus>(GetAgentStatus.Instance, AskTimeout),
                null => new LocalApiError($"send one command line of at most {MaxCommandBytes} bytes"),
                _ => new LocalApiError($"unknown command '{command}'; the commands are: status"),
            };
        }
        catch (AskTimeoutException)
        {
            reply = new LocalApiError("the agent did not answer in time");
        }
        await connection.SendAsync(JsonSerializer.SerializeToUtf8Bytes(reply, reply.GetType(), Json), SocketFlags.None, timeout.Token);
    }

    private static async Task<string?> ReadLine(Socket connection, CancellationToken cancel)
    {
        var buffer = new byte[MaxCommandBytes];
        var length = 0;
        while (length < buffer.Length)
        {
            var read = await connection.ReceiveAsync(buffer.AsMemory(length), SocketFlags.None, cancel);
            if (read == 0) break;
            length += read;
            var newline = Array.IndexOf(buffer, (byte)'\n', 0, length);
            if (newline >= 0) return Encoding.UTF8.GetString(buffer, 0, newline).Trim();
        }
        return length is > 0 and < MaxCommandBytes ? Encoding.UTF8.GetString(buffer, 0, length).Trim() : null;
    }

    /// <summary>Asks a running agent for its status (the client side of the socket).</summary>
    public static async Task<JsonDocument> QueryAsync(string stateDirectory, string command, CancellationToken cancel)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(stateDirectory, SocketName)), cancel);
        await socket.SendAsync(Encoding.UTF8.GetBytes(command + "\n"), SocketFlags.None, cancel);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        return await JsonDocument.ParseAsync(stream, cancellationToken: cancel);
    }

    public void Dispose() => _socket.Dispose();
}

public sealed record LocalApiError(string Error);
