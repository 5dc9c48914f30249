using Akka.Actor;
using Google.Protobuf;
using Grpc.Core;
using Weft.Cluster.Sessions;
using Weft.Contracts.Control;

namespace Weft.Cluster.Control;

/// <summary>
/// The control protocol's gRPC endpoint. <c>Connect</c> runs the Noise handshake on the first
/// frames, then hands the stream to a <see cref="SessionActor"/>: frames in are opened and parsed
/// here, and a writer loop seals and sends whatever the session queues. Refusals before the
/// channel exists travel as gRPC status (Unauthenticated, with the error code as detail); after,
/// as sealed Error messages.
/// </summary>
public sealed class ControlService(
    CoordinatorIdentity identity,
    HandshakeReplayGuard replayGuard,
    Akka.Hosting.IRequiredActor<SessionGuardian> sessions,
    SessionServicesProvider services,
    ControlAdmission admission,
    ActorSystem system,
    Hosting.WeftSettings settings,
    TimeProvider clock,
    ILogger<ControlService> log) : Coordinator.CoordinatorBase
{
    /// <summary>How long a stream waits for its session to start before the agent is told to retry.</summary>
    private static readonly TimeSpan StartSessionTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Whether a request is a gRPC call (what the control listener serves, and nothing else does).</summary>
    public static bool IsGrpcCall(Microsoft.AspNetCore.Http.HttpRequest request) =>
        request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;

    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);
    private static readonly LogThrottle SilentHandshakes = new(TimeSpan.FromSeconds(10));

    public override async Task<ServerKeyResponse> GetServerKey(ServerKeyRequest request, ServerCallContext context)
    {
        var key = await identity.Key.WaitAsync(TimeSpan.FromSeconds(30), context.CancellationToken);
        return new ServerKeyResponse { PublicKey = ByteString.CopyFrom(key.PublicKey.ToArray()), ProtocolVersion = ControlProtocol.Version };
    }

    public override async Task Connect(IAsyncStreamReader<Frame> requests, IServerStreamWriter<Frame> responses, ServerCallContext context)
    {
        // A node that is leaving takes no new agents: they go to the others at once.
        if (CoordinatedShutdown.Get(system).ShutdownReason is not null)
            throw Busy(context, ControlErrorCodes.Unavailable, "this coordinator is shutting down", (uint)SessionsRegistration.MoveAfter.TotalMilliseconds);
        // A reconnect storm is admitted at a bounded rate; the others hear when to come back.
        var remote = context.GetHttpContext().Connection.RemoteIpAddress;
        if (!admission.TryAdmitConnectFrom(remote, out var waitHere))
            throw Busy(context, ControlErrorCodes.RateLimited, "too many connections from this address", waitHere);
        if (!admission.TryAdmitConnect(out var wait))
            throw Busy(context, ControlErrorCodes.RateLimited, "too many agents connecting at once", wait);
        using var handshakeSlot = admission.TryBeginHandshake(remote, out var fromAddress)
            ?? throw Busy(context, ControlErrorCodes.RateLimited,
                fromAddress ? "too many handshakes in progress from this address" : "too many handshakes in progress on this coordinator", 1000);
        var coordinatorKey = await identity.Key.WaitAsync(TimeSpan.FromSeconds(30), context.CancellationToken);
        using var handshakeTimeout = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
        handshakeTimeout.CancelAfter(HandshakeTimeout);
        try
        {
            if (!await requests.MoveNext(handshakeTimeout.Token)) return;
        }
        catch (OperationCanceledException) when (!context.CancellationToken.IsCancellationRequested)
        {
            // A stream that never says hello: one short line, at most every few seconds, however many there are.
            if (SilentHandshakes.ShouldLog(clock.GetUtcNow(), out var alsoSince))
                log.LogInformation("A control stream from {Peer} sent no handshake within {Timeout} s; closed ({Others} more since the last such line)",
                    context.Peer, HandshakeTimeout.TotalSeconds, alsoSince);
            throw Refuse(ControlErrorCodes.HandshakeTimeout, $"no handshake within {HandshakeTimeout.TotalSeconds} s");
        }

        var now = clock.GetUtcNow();
        var accepted = ControlResponder.Accept(coordinatorKey, requests.Current.Data.Span, now, out var refusal);
        if (accepted is null) throw Refuse(refusal!, "the Noise handshake was refused");
        if (!replayGuard.Accept(accepted.Machine, accepted.Timestamp, now))
            throw Refuse(ControlErrorCodes.HandshakeReplayed, "this handshake was seen before");
        if (!admission.TryAdmitHandshakeOf(accepted.Machine.ToString(), out var machineWait))
        {
            accepted.Transport.Dispose();
            throw Busy(context, ControlErrorCodes.RateLimited, "this machine key connects too often", machineWait);
        }
        await responses.WriteAsync(new Frame { Data = ByteString.CopyFrom(accepted.Response) }, context.CancellationToken);
        handshakeSlot.Dispose();

        using var transport = accepted.Transport;
        var outbound = new AgentStreamQueue();
        // The stream lives as long as its session: a node that shuts down drains its sessions first
        // (each tells its agent to move), and a session that ends for any reason ends the stream, at once
        // if the agent stopped reading (see AgentStreamQueue).
        using var streamDone = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, outbound.Abandoned);
        object started;
        try
        {
            started = await sessions.ActorRef.Ask<object>(
                new StartSession(accepted.Machine, outbound, await services.GetAsync(), remote, streamDone.Token), StartSessionTimeout);
        }
        catch (AskTimeoutException)
        {
            // The guardian may still come to this start, or have answered just too late: the stream's end
            // reaches that session (or stops it from starting), so none lingers without its stream.
            await streamDone.CancelAsync();
            // A storm of reconnects (a node just failed, and its agents all come here): the agent is told
            // to come back shortly, as for any other overload, instead of seeing an internal error.
            throw Busy(context, ControlErrorCodes.Unavailable, $"this node could not start a session within {StartSessionTimeout.TotalSeconds:0} s: too many at once", DeviceRegistrar.RetryAfterMs);
        }
        if (started is not IActorRef session)
            throw Busy(context, ControlErrorCodes.Unavailable, (started as SessionRefused)?.Reason ?? "no session", DeviceRegistrar.RetryAfterMs);
        var writer = WriteLoop(outbound, transport, responses, streamDone);
        var inbound = new InboundQueue(settings.Control.InboundQueueLength);
        try
        {
            while (await requests.MoveNext(streamDone.Token))
            {
                if (requests.Current.Data.Length > ControlProtocol.MaxClientMessageSize + 16)
                {
                    outbound.TryQueue(ErrorMessage(ControlErrorCodes.FrameTooLarge, $"a frame of {requests.Current.Data.Length} bytes exceeds the limit of {ControlProtocol.MaxClientMessageSize}; the stream ends"));
                    break;
                }
                var plaintext = transport.Open(requests.Current.Data.Span);
                if (plaintext is null)
                {
                    outbound.TryQueue(ErrorMessage(ControlErrorCodes.FrameUnauthenticated, "a frame did not authenticate; the stream ends"));
                    break;
                }
                ClientMessage message;
                try
                {
                    message = ClientMessage.Parser.ParseFrom(plaintext);
                }
                catch (InvalidProtocolBufferException e)
                {
                    outbound.TryQueue(ErrorMessage(ControlErrorCodes.FrameMalformed, "a frame is not a ClientMessage: " + e.Message));
                    break;
                }
                if (!inbound.TryAdd())
                {
                    outbound.TryQueue(ErrorMessage(ControlErrorCodes.RateLimited,
                        $"more than {inbound.Capacity} messages are waiting for this stream's session; the stream ends"));
                    break;
                }
                session.Tell(new ClientFrameArrived(message, inbound));
            }
        }
        catch (OperationCanceledException)
        {
            // The session closed the stream, or the client went away.
        }
        catch (IOException e)
        {
            log.LogDebug(e, "Stream of machine {Machine} broke", accepted.Machine);
        }
        finally
        {
            session.Tell(new StreamClosed("stream ended"));
            outbound.Complete();
            await writer;
        }
    }

    /// <summary>Seals and writes what the session queues; when the session closes the queue, ends the read side too.</summary>
    private async Task WriteLoop(AgentStreamQueue queue, ControlTransport transport, IServerStreamWriter<Frame> responses, CancellationTokenSource streamDone)
    {
        try
        {
            await foreach (var message in queue.ReadAllAsync(streamDone.Token))
                await responses.WriteAsync(new Frame { Data = ByteString.CopyFrom(transport.Seal(message)) }, streamDone.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException)
        {
            // The call is over.
        }
        finally
        {
            await streamDone.CancelAsync();
        }
    }

    private static byte[] ErrorMessage(string code, string message) =>
        new ServerMessage { Error = new Error { Code = code, Message = message } }.ToByteArray();

    private static RpcException Refuse(string code, string message) => new(new Grpc.Core.Status(StatusCode.Unauthenticated, $"{code}: {message}"));

    private static RpcException Busy(ServerCallContext context, string code, string message, uint retryAfterMs)
    {
        context.ResponseTrailers.Add(ControlProtocol.RetryAfterTrailer, retryAfterMs.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return new RpcException(new Grpc.Core.Status(StatusCode.Unavailable, $"{code}: {message}; retry after {retryAfterMs} ms"));
    }
}

/// <summary>Builds the sessions' view of this node once the coordinator key is known.</summary>
public sealed class SessionServicesProvider(
    Akka.Hosting.IRequiredActor<Tailnets.TailnetDirectoryActor> directory,
    Akka.Hosting.IRequiredActor<Tailnets.TailnetActor> tailnets,
    Akka.Hosting.IRequiredActor<Devices.DeviceActor> devices,
    Akka.Hosting.IRequiredActor<Machines.MachineIndexActor> machines,
    CoordinatorIdentity identity,
    ControlAdmission admission,
    Hosting.WeftSettings settings,
    Relays.RelayTicketIssuer relays,
    Identity.LoginLinks logins,
    Tailnets.TailnetAffinity affinity,
    TimeProvider clock)
{
    private SessionServices? _services;

    public async Task<SessionServices> GetAsync() => _services ??= new SessionServices(
        directory.ActorRef, tailnets.ActorRef, devices.ActorRef, machines.ActorRef, affinity, await identity.Key, clock, admission,
        TimeSpan.FromSeconds(settings.Control.SessionReattachSeconds), TimeSpan.FromSeconds(settings.Control.KeepAliveSeconds))
    {
        Relays = relays,
        Logins = logins,
        UnregisteredLimit = TimeSpan.FromSeconds(settings.Control.UnregisteredStreamSeconds),
        StreamsPerMachine = settings.Control.StreamsPerMachine,
    };
}

/// <summary>
/// Lets one log line through per interval and counts the ones it held back, so that a flood of the
/// same event (a scanner, a misbehaving client) cannot fill the log.
/// </summary>
public sealed class LogThrottle(TimeSpan interval)
{
    private readonly object _gate = new();
    private DateTimeOffset _last = DateTimeOffset.MinValue;
    private int _suppressed;

    /// <param name="suppressed">How many were held back since the last line that went through.</param>
    public bool ShouldLog(DateTimeOffset now, out int suppressed)
    {
        lock (_gate)
        {
            if (now - _last < interval)
            {
                _suppressed++;
                suppressed = 0;
                return false;
            }
            _last = now;
            suppressed = _suppressed;
            _suppressed = 0;
            return true;
        }
    }
}
