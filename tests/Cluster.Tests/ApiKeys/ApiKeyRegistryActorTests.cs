using Akka.Actor;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.ApiKeys;

/// <summary>
/// The API-key registry entity on a one-node cluster: it answers a command once the change is
/// replicated, and a hand-off that stops it in between must not swallow the answer.
/// </summary>
public class ApiKeyRegistryActorTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly DateTimeOffset At = new(2026, 12, 5, 1, 0, 0, TimeSpan.Zero);

    public ApiKeyRegistryActorTests() : base(TestActorSystems.OneNodeCluster) => TestActorSystems.JoinItself(this);

    [Fact]
    public void A_registry_handed_off_right_after_issuing_a_key_still_answers_with_the_key_and_the_key_is_stored()
    {
        var registry = Sys.ActorOf(ApiKeyRegistryActor.PropsFor(new PersistenceSettings()), "registry");
        registry.Tell(new ListApiKeys(null));
        Assert.Empty(ExpectMsg<ApiKeyListing>().Keys); // started and recovered
        Watch(registry);

        // Sharding stops it for a hand-off while the key is being stored: it stops once the write is
        // done, before the replicator has confirmed it to every node.
        registry.Tell(new IssueApiKey("key_handoff", ApiKeyScope.Operator, null, "hash", "issued during a hand-off", At));
        registry.Tell(StopEntity.Instance);
        var issued = ExpectMsg<ApiKeySummary>(TimeSpan.FromSeconds(10));
        Assert.Equal("key_handoff", issued.KeyId);
        ExpectTerminated(registry, TimeSpan.FromSeconds(10));

        // Its next incarnation (on whichever node) has the key.
        var next = Sys.ActorOf(ApiKeyRegistryActor.PropsFor(new PersistenceSettings()), "registry-next");
        next.Tell(new ListApiKeys(null));
        Assert.Equal("key_handoff", Assert.Single(ExpectMsg<ApiKeyListing>().Keys).KeyId);
    }
}
