using Akka.Configuration;
using Weft.Cluster.Hosting;

namespace Weft.Cluster.Tests.Support;

/// <summary>Configuration for TestKit actor systems: Weft's serializers, in-memory persistence, every message serialized.</summary>
public static class TestActorSystems
{
    public static readonly Config WithWeftSerialization = WeftSerialization.Config.WithFallback(CompactMailbox.Configuration);

    /// <summary>In-memory journal (fast unit tests of entity shells) with serialization forced on every message and event.</summary>
    public static readonly Config InMemoryPersistence = ConfigurationFactory.ParseString("""
        akka.actor.serialize-messages = off
        akka.persistence.journal.plugin = "akka.persistence.journal.inmem"
        akka.persistence.snapshot-store.plugin = "akka.persistence.snapshot-store.inmem"
        """).WithFallback(WithWeftSerialization);
}
