using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.MultiNode;

/// <summary>
/// Only nodes holding the cluster secret become members. A stock <c>weft</c> pointed at a member's
/// cluster port (its own SQLite, so its own generated secret) is refused at the TLS handshake. Other
/// multi-node tests show that nodes with the same secret do join. A node whose own handshake is cut off
/// (the peer closed the connection midway, as a node does while it shuts down or crashes) is not the
/// one at fault: it keeps running and dials again.
/// </summary>
[Collection(CoordinatorProcesses.Name)]
public class ClusterAdmissionTests
{
    [SkippableFact]
    public async Task A_node_without_the_cluster_secret_is_refused_at_the_handshake_and_never_becomes_a_member()
    {
        await using var cluster = await TestCluster.StartAsync(1);
        var member = cluster.Nodes[0];
        var folder = Directory.CreateTempSubdirectory("weft-intruder-").FullName;
        try
        {
            await using var intruder = new CoordinatorNode("intruder", [$"127.0.0.1:{member.AkkaPort}"], new Dictionary<string, string>
            {
                ["Weft__Storage__DataDirectory"] = folder,
            });
            intruder.Start();

            await Eventually.Until(() => member.Output.Contains("does not hold this cluster's secret"),
                "the member refuses the intruder's connection", TimeSpan.FromSeconds(60));
            // The intruder refuses the member's certificate in turn, and stops with a clear reason and a failing exit code.
            await Eventually.Until(() => !intruder.Running, "the intruder stops", TimeSpan.FromSeconds(60));
            Assert.Equal(79, intruder.ExitCode);
            Assert.Contains("do not hold the same cluster secret", intruder.Output);
            Assert.DoesNotContain("coordinator key", intruder.Output); // it never got as far as the ready banner
            // The member never saw it as a member, and carries on alone.
            var health = await CoordinatorCluster.Health(member);
            Assert.NotNull(health);
            Assert.Equal([member.Address], health.Members.Select(m => m.Address));
            Assert.True(member.Running);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [SkippableFact]
    public async Task A_node_whose_handshake_is_cut_off_keeps_running_says_why_and_dials_again()
    {
        // A "seed" that takes the connection, reads the start of the TLS handshake and hangs up, as a
        // node going down does to a connection that reached it in its last moment.
        await using var seed = LoopbackPeer.CuttingHandshakes();
        var folder = Directory.CreateTempSubdirectory("weft-cut-off-").FullName;
        try
        {
            await using var node = new CoordinatorNode("cut-off", [$"127.0.0.1:{seed.Port}"], new Dictionary<string, string>
            {
                ["Weft__Storage__DataDirectory"] = folder,
            });
            node.Start();

            await Eventually.Until(() => seed.HandshakesCut >= 3 || !node.Running, "the node's handshakes reach the seed and are cut off, again and again", TimeSpan.FromSeconds(60));
            Assert.True(node.Running, $"the node stopped (exit code {node.ExitCode}):\n{node.Output}");
            Assert.Contains($"weft@127.0.0.1:{seed.Port} failed: the node closed the connection before it completed", node.Output);
            Assert.DoesNotContain("do not hold the same cluster secret", node.Output);
            Assert.DoesNotContain("Refused a cluster connection", node.Output);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
