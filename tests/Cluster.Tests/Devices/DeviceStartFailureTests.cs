using Akka.Actor;
using Akka.Hosting;
using Akka.TestKit;
using Weft.Cluster.Devices;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Control;

namespace Weft.Cluster.Tests.Devices;

/// <summary>A device entity whose journal refuses the write that starts its stream.</summary>
public class DeviceStartFailureTests : Akka.TestKit.Xunit2.TestKit
{
    private readonly TestProbe _tailnet;

    public DeviceStartFailureTests() : base(RejectingJournal.Configuration.WithFallback(TestActorSystems.InMemoryPersistence))
    {
        _tailnet = CreateTestProbe("tailnet");
        _tailnet.IgnoreMessages(_ => true);
        ActorRegistry.For(Sys).Register<TailnetActor>(_tailnet.Ref);
    }

    private IActorRef Activate(string deviceId) =>
        Sys.ActorOf(DeviceActor.PropsFor(deviceId, new PersistenceSettings(), TimeProvider.System, [], TimeSpan.FromSeconds(3)));

    [Fact]
    public void A_stream_start_the_journal_rejects_ends_the_waiting_session_and_the_next_attach_starts_it()
    {
        const string deviceId = "dev_start_rejected";
        var first = Activate(deviceId);
        first.Tell(new InitializeDevice(deviceId, "tn_reject"));
        ExpectMsg<DeviceReady>();
        // A later activation (after passivation, or on another node) stores a new epoch on its first attach.
        Watch(first);
        Sys.Stop(first);
        ExpectTerminated(first);
        var device = Activate(deviceId);

        RejectingJournal.Reject("device-" + deviceId);
        var refused = CreateTestProbe("refused-session");
        device.Tell(new AttachSession(deviceId, refused.Ref, 0, false));
        var ended = refused.ExpectMsg<SessionEnded>(TimeSpan.FromSeconds(10));
        Assert.Equal(ControlErrorCodes.Unavailable, ended.Code);

        // The agent reconnects once the journal takes writes again: before, every later attach waited
        // behind the refused one and this device's stream never started until the entity passivated.
        RejectingJournal.Accept("device-" + deviceId);
        var next = CreateTestProbe("next-session");
        device.Tell(new AttachSession(deviceId, next.Ref, 0, false));
        var attached = next.ExpectMsg<SessionAttached>(TimeSpan.FromSeconds(10));
        Assert.Equal(deviceId, attached.DeviceId);
        Assert.True(attached.Version > 0);
    }
}
