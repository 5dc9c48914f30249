using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Akka.Remote;
using Weft.ClusterLab;
using Weft.Cluster.Hosting;

namespace Weft.Cluster.Tests.Hosting;

/// <summary>
/// Two real cluster nodes (Akka remoting over loopback TCP) with no downing provider, so that
/// nothing but <see cref="QuarantineGuard"/> can stop the one the other quarantines.
/// </summary>
public class QuarantineGuardTests
{
    private static readonly Config NodeConfig = ConfigurationFactory.ParseString("""
        akka.loglevel = WARNING
        akka.stdout-loglevel = WARNING
        akka.actor.provider = cluster
        akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0 }
        akka.cluster.downing-provider-class = ""
        akka.cluster.run-coordinated-shutdown-when-down = on
        akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
        """);

    [Fact]
    public async Task A_node_that_a_member_has_quarantined_downs_itself_and_stops_while_the_other_carries_on()
    {
        using var first = ActorSystem.Create("guarded", NodeConfig);
        using var second = ActorSystem.Create("guarded", NodeConfig);
        var (firstCluster, secondCluster) = (Akka.Cluster.Cluster.Get(first), Akka.Cluster.Cluster.Get(second));
        firstCluster.Join(firstCluster.SelfAddress);
        secondCluster.Join(firstCluster.SelfAddress);
        foreach (var cluster in new[] { firstCluster, secondCluster })
            await Eventually.Until(() => cluster.State.Members.Count(m => m.Status == MemberStatus.Up) == 2, $"{cluster.SelfAddress} sees two members up");
        second.ActorOf(QuarantineGuard.Props(), "quarantine-guard");

        // What a member does when it removes a node it has downed (or has lost messages to it for good).
        var firstRemoting = (IRemoteActorRefProvider)((ExtendedActorSystem)first).Provider;
        firstRemoting.Quarantine(secondCluster.SelfAddress, secondCluster.SelfUniqueAddress.Uid);

        await Eventually.Until(() => second.WhenTerminated.IsCompleted, "the quarantined node stops", TimeSpan.FromSeconds(60));
        Assert.IsType<CoordinatedShutdown.ClusterDowningReason>(CoordinatedShutdown.Get(second).ShutdownReason);
        Assert.False(first.WhenTerminated.IsCompleted);
        Assert.Null(CoordinatedShutdown.Get(first).ShutdownReason);
    }
}
