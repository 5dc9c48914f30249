using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;

namespace Weft.Cluster.Tests.Support;

/// <summary>
/// The control protocol by hand, for tests that must send what a well-behaved agent never would:
/// forged or replayed handshakes, garbled or oversized frames, refused registrations.
/// </summary>
public sealed class RawControlStream : IAsyncDisposable
{
    private readonly GrpcChannel _channel;
    private readonly AsyncDuplexStreamingCall<Frame, Frame> _call;

    private RawControlStream(GrpcChannel channel, Curve25519PublicKey coordinatorKey)
    {
        _channel = channel;
        CoordinatorKey = coordinatorKey;
        _call = new Coordinator.CoordinatorClient(channel).Connect();
    }

    public Curve25519PublicKey CoordinatorKey { get; }

    public ControlTransport? Transport { get; private set; }

    public static async Task<RawControlStream> OpenAsync(Uri control)
    {
        var channel = GrpcChannel.ForAddress(control, new GrpcChannelOptions { MaxSendMessageSize = 64 * 1024 * 1024 });
        var key = await new Coordinator.CoordinatorClient(channel).GetServerKeyAsync(new ServerKeyRequest());
        return new RawControlStream(channel, new Curve25519PublicKey(key.PublicKey.Span));
    }

    public Task SendRaw(byte[] data) => _call.RequestStream.WriteAsync(new Frame { Data = ByteString.CopyFrom(data) });

    /// <summary>The next raw frame, or the RpcException that ended the call (OperationCanceledException after <paramref name="within"/>).</summary>
    public async Task<byte[]> ReadRaw(TimeSpan? within = null)
    {
        using var timeout = new CancellationTokenSource(within ?? TestAgent.Deadline);
        if (!await _call.ResponseStream.MoveNext(timeout.Token)) throw new EndOfStreamException("the coordinator ended the stream");
        return _call.ResponseStream.Current.Data.ToByteArray();
    }

    /// <summary>A complete handshake with <paramref name="machine"/>; returns the initiation that was sent.</summary>
    public async Task<byte[]> Handshake(Curve25519PrivateKey machine, DateTimeOffset? at = null)
    {
        using var initiator = ControlInitiator.Begin(machine, CoordinatorKey, at ?? DateTimeOffset.UtcNow);
        await SendRaw(initiator.Initiation);
        Transport = initiator.Complete(await ReadRaw()) ?? throw new InvalidOperationException("the coordinator's response did not authenticate");
        return initiator.Initiation;
    }

    public Task Send(ClientMessage message) => SendRaw(Transport!.Seal(message));

    /// <summary>The next server message, skipping pings (OperationCanceledException when none came within <paramref name="within"/>).</summary>
    public async Task<ServerMessage> Receive(TimeSpan? within = null)
    {
        while (true)
        {
            var plaintext = Transport!.Open(await ReadRaw(within)) ?? throw new InvalidOperationException("a server frame did not authenticate");
            var message = ServerMessage.Parser.ParseFrom(plaintext);
            if (message.BodyCase != ServerMessage.BodyOneofCase.Ping) return message;
        }
    }

    /// <summary>Reads until the stream ends; true if it ended (cleanly or with an error status).</summary>
    public async Task<bool> EndsSoon()
    {
        try
        {
            while (true) await ReadRaw();
        }
        catch (Exception e) when (e is EndOfStreamException or RpcException)
        {
            return true;
        }
    }

    public async Task<RegisterResult> Register(Curve25519PrivateKey machine, Curve25519PrivateKey node, string authKey = "", string tailnet = "", string hostname = "raw",
        string resumeTailnetId = "", string resumeDeviceId = "")
    {
        await Send(new ClientMessage
        {
            Register = new RegisterRequest
            {
                NodeKey = ByteString.CopyFrom(node.PublicKey.ToArray()),
                NodeKeyProof = ByteString.CopyFrom(NodeKeyProof.Create(node, CoordinatorKey, machine.PublicKey)),
                Hostname = hostname,
                AuthKey = authKey,
                Tailnet = tailnet,
                ResumeTailnetId = resumeTailnetId,
                ResumeDeviceId = resumeDeviceId,
            },
        });
        var answer = await Receive();
        return answer.RegisterResult ?? throw new InvalidOperationException($"expected a RegisterResult, got {answer}");
    }

    public async ValueTask DisposeAsync()
    {
        _call.Dispose();
        Transport?.Dispose();
        await Task.CompletedTask;
        _channel.Dispose();
    }
}
