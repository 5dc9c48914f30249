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

    /// <summary>A cluster of this one node (distributed data and sharding need one) on in-memory persistence; join it with <see cref="JoinItself"/>.</summary>
    public static readonly Config OneNodeCluster = ConfigurationFactory.ParseString("""
        akka.actor.provider = cluster
        akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0 }
        akka.cluster.downing-provider-class = ""
        akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
        """).WithFallback(InMemoryPersistence);

    /// <summary>Makes a <see cref="OneNodeCluster"/> system a member of its own cluster, and waits until it is up.</summary>
    public static void JoinItself(Akka.TestKit.TestKitBase kit)
    {
        var cluster = Akka.Cluster.Cluster.Get(kit.Sys);
        cluster.Join(cluster.SelfAddress);
        kit.AwaitCondition(() => cluster.SelfMember.Status == Akka.Cluster.MemberStatus.Up, TimeSpan.FromSeconds(20));
    }
}
