using Akka.Actor;
using Akka.Hosting;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>
/// The tailnet directory entity on a one-node cluster (its state is replicated with distributed
/// data, which needs one), with probes for the tailnet region and the API-key registry.
/// </summary>
public class TailnetDirectoryActorTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly DateTimeOffset At = new(2026, 12, 4, 10, 0, 0, TimeSpan.Zero);

    public TailnetDirectoryActorTests() : base(TestActorSystems.OneNodeCluster) => TestActorSystems.JoinItself(this);

    [Fact]
    public void A_directory_that_started_before_the_api_key_registry_was_registered_still_revokes_a_removed_tailnets_keys()
    {
        var tailnets = CreateTestProbe("tailnets");
        var directory = Sys.ActorOf(TailnetDirectoryActor.PropsFor(tailnets.Ref, new PersistenceSettings()));
        directory.Tell(new ListTailnets());
        ExpectMsg<TailnetListing>(); // started and recovered
        // Only now is the registry's region registered, as on a node whose remembered directory started first.
        var apiKeys = CreateTestProbe("api-keys");
        ActorRegistry.For(Sys).Register<ApiKeyRegistryActor>(apiKeys.Ref);

        directory.Tell(new RegisterTailnet("tn_directory", "acme", TailnetRules.DefaultSettings("acme"), At));
        Assert.Equal("tn_directory", tailnets.ExpectMsg<CreateTailnet>().TailnetId);
        tailnets.Reply(new TailnetInfo("tn_directory", TailnetRules.DefaultSettings("acme"), At));
        Assert.Equal("acme", ExpectMsg<TailnetRegistered>(TimeSpan.FromSeconds(10)).Entry.Name);

        directory.Tell(new RemoveTailnet("tn_directory", At));
        Assert.Equal("tn_directory", tailnets.ExpectMsg<DeleteTailnet>().TailnetId);
        tailnets.Reply(new TailnetDeletedAck("tn_directory"));
        Assert.Equal("tn_directory", apiKeys.ExpectMsg<RevokeTailnetApiKeys>().TailnetId);
        apiKeys.Reply(new ApiKeyListing([]));
        Assert.Equal("tn_directory", ExpectMsg<TailnetRemoved>(TimeSpan.FromSeconds(10)).TailnetId);
    }
}
