using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.MultiNode;

/// <summary>
/// Only nodes holding the cluster secret become members. A stock <c>weft</c> pointed at a member's
/// cluster port (its own SQLite, so its own generated secret) is refused at the TLS handshake. Other
/// multi-node tests show that nodes with the same secret do join.
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
}
