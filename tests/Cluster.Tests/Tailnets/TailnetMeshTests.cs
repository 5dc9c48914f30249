using Akka.Actor;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>The console's mesh view, as the tailnet entity answers it.</summary>
public class TailnetMeshTests() : Akka.TestKit.Xunit2.TestKit(TestActorSystems.InMemoryPersistence)
{
    private static readonly DateTimeOffset Created = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void A_mesh_of_more_pairs_than_a_graph_can_show_is_answered_without_them_and_a_small_one_in_full()
    {
        // Pairs grow with the square of the devices: under an allow-all policy, 50,000 devices make over a billion, and
        // the console asks every second. The entity built them all, inside the mailbox its registrations and netmaps share.
        const string id = "tn_mesh_size";
        var tailnet = Sys.ActorOf(TailnetActor.PropsFor(id, new PersistenceSettings()));
        tailnet.Tell(new CreateTailnet(id, TailnetRules.DefaultSettings("acme"), Created));
        ExpectMsg<TailnetInfo>();
        tailnet.Tell(new CreateAuthKey(id, "k", "h", null, true, false, [], Created.AddDays(1), "", Created));
        ExpectMsg<AuthKeyInfo>();
        void Register(int i)
        {
            tailnet.Tell(new RegisterDevice(id, $"dev_{i:d4}", i.ToString("x64"), (100_000 + i).ToString("x64"), "", $"host-{i}", "linux", "k", "h", Created));
            ExpectMsg<DeviceRegistration>();
        }

        for (var i = 0; i < 200; i++) Register(i); // 19,900 pairs: listed
        tailnet.Tell(new GetMesh(id));
        var full = ExpectMsg<MeshLinks>();
        Assert.True(full.Complete);
        Assert.Equal(200 * 199 / 2, full.Links.Count);

        Register(200); // 20,100 pairs: past the limit
        tailnet.Tell(new GetMesh(id));
        var over = ExpectMsg<MeshLinks>();
        Assert.False(over.Complete);
        Assert.Empty(over.Links);
    }
}
