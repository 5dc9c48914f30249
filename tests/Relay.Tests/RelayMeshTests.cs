using System.Text;
using Weft.Contracts.Relay;

namespace Weft.Relay.Tests;

/// <summary>Two relays of one region sharing a mesh key: clients on either reach each other, and a lost relay is survived.</summary>
public class RelayMeshTests
{
    [Fact]
    public async Task A_client_on_relay_one_reaches_a_client_on_relay_two_and_back_through_one_mesh_hop()
    {
        await using var lab = new RelayLab();
        var one = lab.StartRelay();
        var two = lab.StartRelay([RelayLab.AddressOf(one)]);
        // one also watches two (every relay of a region watches every other).
        await using var oneWatchesTwo = new RelayLab();
        var (alice, aliceKey) = await lab.Connect(one);
        var (bob, bobKey) = await lab.Connect(two);
        Assert.True(await RelayLab.Eventually(() => two.MeshedKeys.Contains(aliceKey.PublicKey)), "relay two should learn alice from relay one's PeerPresent");

        bob.TrySend(aliceKey.PublicKey, "via the mesh"u8);
        var atAlice = await RelayLab.NextPacket(alice);
        Assert.Equal(bobKey.PublicKey, atAlice!.Value.Source);
        Assert.Equal("via the mesh", Encoding.UTF8.GetString(atAlice.Value.Packet));
        // Counted once the mesh link took it, which can be after alice has it.
        Assert.True(await RelayLab.Eventually(() => two.Counters.PacketsMeshed == 1), $"meshed {two.Counters.PacketsMeshed}, expected 1");
    }

    [Fact]
    public async Task Both_directions_work_when_each_relay_watches_the_other_and_a_killed_relay_is_forgotten_and_relearned_after_restart()
    {
        await using var lab = new RelayLab();
        var one = lab.StartRelay();
        var oneAddress = RelayLab.AddressOf(one);
        var twoPort = FreePort();
        var two = lab.StartRelay([oneAddress], port: twoPort);
        // Restart one so that it watches two as well (its address is now known).
        await one.DisposeAsync();
        one = lab.StartRelay([new RelayNodeAddress("127.0.0.1", twoPort)], port: oneAddress.Port);

        var (alice, aliceKey) = await lab.Connect(one);
        var (bob, bobKey) = await lab.Connect(two);
        Assert.True(await RelayLab.Eventually(() => one.MeshedKeys.Contains(bobKey.PublicKey) && two.MeshedKeys.Contains(aliceKey.PublicKey)));
        alice.TrySend(bobKey.PublicKey, "a→b"u8);
        Assert.Equal("a→b", Encoding.UTF8.GetString((await RelayLab.NextPacket(bob))!.Value.Packet));
        bob.TrySend(aliceKey.PublicKey, "b→a"u8);
        Assert.Equal("b→a", Encoding.UTF8.GetString((await RelayLab.NextPacket(alice))!.Value.Packet));

        // Relay two dies: one forgets everything it learned from two at once.
        await two.DisposeAsync();
        Assert.True(await RelayLab.Eventually(() => one.MeshedKeys.Count == 0), "relay one must forget bob when its link to two breaks");

        // Two comes back on its port; bob reconnects there; one re-learns him from the new watch.
        two = lab.StartRelay([oneAddress], port: twoPort);
        var (bobAgain, _) = await lab.Connect(two, bobKey);
        Assert.True(await RelayLab.Eventually(() => one.MeshedKeys.Contains(bobKey.PublicKey)), "relay one should re-learn bob after two restarts");
        alice.TrySend(bobKey.PublicKey, "again"u8);
        Assert.Equal("again", Encoding.UTF8.GetString((await RelayLab.NextPacket(bobAgain))!.Value.Packet));
    }

    [Fact]
    public async Task Clients_of_different_tailnets_never_reach_each_other_on_one_relay_or_across_the_mesh()
    {
        await using var lab = new RelayLab();
        var one = lab.StartRelay();
        var two = lab.StartRelay([RelayLab.AddressOf(one)]);
        var (acme, _) = await lab.Connect(one, tailnet: "tn_acme");
        var (globexHere, globexHereKey) = await lab.Connect(one, tailnet: "tn_globex");
        var (globexThere, globexThereKey) = await lab.Connect(two, tailnet: "tn_globex");
        var (acmeThere, acmeThereKey) = await lab.Connect(two, tailnet: "tn_acme");
        Assert.True(await RelayLab.Eventually(() => one.MeshedKeys.Count == 0 && two.MeshedKeys.Count == 2), "two learns both of one's clients");

        // From relay two: to a globex client on relay one (a tailnet of its own) and back.
        globexThere.TrySend(globexHereKey.PublicKey, "same tailnet"u8);
        Assert.Equal("same tailnet", Encoding.UTF8.GetString((await RelayLab.NextPacket(globexHere))!.Value.Packet));
        acmeThere.TrySend(globexHereKey.PublicKey, "other tailnet, across the mesh"u8);
        acme.TrySend(globexHereKey.PublicKey, "other tailnet, same relay"u8);
        Assert.True(await RelayLab.Eventually(() => one.Counters.DroppedFor("unknown_destination") == 1 && two.Counters.DroppedFor("unknown_destination") == 1));
        Assert.Null(await RelayLab.NextPacket(globexHere, TimeSpan.FromMilliseconds(500)));
        Assert.True(await RelayLab.Eventually(() => two.Counters.PacketsMeshed == 1), $"meshed {two.Counters.PacketsMeshed}, expected 1");
        GC.KeepAlive(globexThereKey);
        GC.KeepAlive(acmeThereKey);
    }

    [Fact]
    public async Task A_forwarded_packet_is_delivered_locally_or_dropped_and_never_forwarded_again()
    {
        await using var lab = new RelayLab();
        var one = lab.StartRelay();
        var two = lab.StartRelay([RelayLab.AddressOf(one)]);
        var (alice, _) = await lab.Connect(one);
        using var ghost = Weft.Contracts.Keys.Curve25519PrivateKey.Generate();
        // A mesh peer forwarding a packet for a key that is not on `one`: dropped there, not bounced.
        var mesh = await RelayClientConnection.ConnectAsync(RelayLab.AddressOf(one), Weft.Contracts.Keys.Curve25519PrivateKey.Generate(), new ClientInfo { MeshKey = RelayLab.MeshKey }, CancellationToken.None);
        await using (mesh)
        {
            mesh.TryForward(ghost.PublicKey, ghost.PublicKey, "loop?"u8);
            Assert.True(await RelayLab.Eventually(() => one.Counters.DroppedFor("forward_unknown_destination") == 1));
            Assert.Equal(0, one.Counters.PacketsMeshed);
        }
        GC.KeepAlive(alice);
        GC.KeepAlive(two);
    }

    private static int FreePort()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
