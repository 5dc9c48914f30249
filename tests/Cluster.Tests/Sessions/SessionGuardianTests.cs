using Akka.Actor;
using Weft.Cluster.Control;
using Weft.Cluster.Sessions;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Keys;

namespace Weft.Cluster.Tests.Sessions;

/// <summary>
/// The guardian and the sessions it starts, against the end of their streams. Under a reconnect storm
/// the guardian can reach a start after the stream stopped waiting for it (the control service waits
/// 5 s); such a session has no stream and must not live on until its silence limit.
/// </summary>
public class SessionGuardianTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);
    private readonly Curve25519PrivateKey _coordinatorKey = Curve25519PrivateKey.Generate();
    private readonly Curve25519PrivateKey _machineKey = Curve25519PrivateKey.Generate();

    public SessionGuardianTests() : base(TestActorSystems.WithWeftSerialization)
    {
    }

    private StartSession StartFor(AgentStreamQueue outbound, CancellationToken streamEnded)
    {
        // Keepalives every minute: a session that stops within the test did not stop for silence.
        var probe = CreateTestProbe().Ref;
        var services = new SessionServices(probe, probe, probe, probe, new TailnetAffinity(100), _coordinatorKey, TimeProvider.System,
            new ControlAdmission(new ControlSettings(), TimeProvider.System), TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1));
        return new StartSession(new MachineKey(_machineKey.PublicKey), outbound, services, StreamEnded: streamEnded);
    }

    private static async Task<int> SessionsOf(IActorRef guardian) => (await guardian.Ask<SessionCount>(CountSessions.Instance, Limit)).Sessions;

    [Fact]
    public async Task A_start_that_reaches_the_guardian_after_its_stream_ended_starts_no_session()
    {
        var guardian = Sys.ActorOf(SessionGuardian.Props());
        using var streamEnded = new CancellationTokenSource();
        streamEnded.Cancel();

        guardian.Tell(StartFor(new AgentStreamQueue(), streamEnded.Token), TestActor);

        var refused = await ExpectMsgAsync<SessionRefused>(Limit);
        Assert.Contains("stream ended", refused.Reason);
        Assert.Equal(0, await SessionsOf(guardian));
    }

    [Fact]
    public async Task A_session_stops_when_its_stream_ends_even_if_no_one_tells_it()
    {
        var guardian = Sys.ActorOf(SessionGuardian.Props());
        var outbound = new AgentStreamQueue();
        using var streamEnded = new CancellationTokenSource();

        guardian.Tell(StartFor(outbound, streamEnded.Token), TestActor);
        var session = await ExpectMsgAsync<IActorRef>(Limit);
        Watch(session);
        Assert.Equal(1, await SessionsOf(guardian));

        // What the control service does when its wait for the answer times out: only the token says so.
        streamEnded.Cancel();

        await ExpectTerminatedAsync(session, Limit);
        await outbound.Completion.WaitAsync(Limit); // the session completed its outbound queue
        await AwaitAssertAsync(async () => Assert.Equal(0, await SessionsOf(guardian)), Limit);
    }

    [Fact]
    public async Task A_session_whose_stream_ended_while_it_was_being_created_stops_at_once()
    {
        // The guardian saw the stream alive, and the stream ended before the session's first message:
        // the session registers on a token already cancelled, and hears it then.
        var outbound = new AgentStreamQueue();
        using var streamEnded = new CancellationTokenSource();
        var start = StartFor(outbound, streamEnded.Token);
        streamEnded.Cancel();

        var session = Sys.ActorOf(SessionActor.PropsFor(start.Machine, start.Outbound, start.Services, streamEnded: start.StreamEnded));
        Watch(session);

        await ExpectTerminatedAsync(session, Limit);
        await outbound.Completion.WaitAsync(Limit); // the session completed its outbound queue
    }
}
