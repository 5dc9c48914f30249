using System.Text;
using Weft.Contracts.Keys;
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
    public async Task A_relay_that_starts_watching_a_peer_holding_many_clients_learns_every_one_of_them()
    {
        // What a restart leaves: the region's clients all moved to relay one, and relay two comes (back) up and watches it.
        // Each client is announced at once, far more than a client connection's control queue holds.
        const int clients = 600;
        await using var lab = new RelayLab();
        var one = lab.StartRelay();
        var keys = new List<Curve25519PublicKey>(clients);
        for (var i = 0; i < clients; i++) keys.Add((await lab.Connect(one)).Key.PublicKey);
        Assert.Equal(clients, one.ConnectedKeys.Count);

        var two = lab.StartRelay([RelayLab.AddressOf(one)]);
        Assert.True(await RelayLab.Eventually(() => two.MeshedKeys.Count == clients), $"relay two learned {two.MeshedKeys.Count} of relay one's {clients} clients");
        Assert.All(keys, key => Assert.Contains(key, two.MeshedKeys));
        Assert.Equal(0, one.Counters.DroppedFor("mesh_control_overflow"));
    }

    [Fact]
    public async Task Both_directions_work_when_each_relay_watches_the_other_and_a_killed_relay_is_forgotten_and_relearned_after_restart()
    {
        await using var lab = new RelayLab();
        var one = lab.StartRelay();
        var oneAddress = RelayLab.AddressOf(one);
        var twoPort = RelayLab.FreePort();
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

    /// <summary>
    /// Idle connections cut after 2 s (checked every 2 s), so mesh links ping every 500 ms and give a silent peer
    /// up after 1.5 s: wide enough for a test host whose thread pool is busy with other tests.
    /// </summary>
    private static RelayOptions Quick(RelayOptions options) =>
        options with { KeepAliveInterval = TimeSpan.FromSeconds(2), IdleTimeout = TimeSpan.FromSeconds(2) };

    private static string Reasons(IReadOnlyDictionary<string, long> counts) => counts.Count == 0 ? "nothing" : string.Join(", ", counts.Select(c => $"{c.Value} {c.Key}"));

    /// <summary>Pings through <paramref name="client"/> every 200 ms until <paramref name="stop"/>, as an agent's relay client keeps its connection.</summary>
    private static async Task KeepPinging(RelayClientConnection client, CancellationToken stop)
    {
        try
        {
            while (!stop.IsCancellationRequested)
            {
                client.TrySendFrame(RelayFrame.Build(RelayFrameType.Ping, new byte[RelayFrame.PingSize]));
                await Task.Delay(200, stop);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    [Fact]
    public async Task Relays_given_one_list_that_names_them_all_skip_themselves_and_mesh_with_the_others()
    {
        // As the pods of one StatefulSet, sharing one ConfigMap: each relay's mesh list names itself too.
        await using var lab = new RelayLab();
        var (onePort, twoPort) = (RelayLab.FreePort(), RelayLab.FreePort());
        RelayNodeAddress[] region = [new("127.0.0.1", onePort), new("localhost", twoPort)];
        var one = lab.StartRelay(region, port: onePort);
        var two = lab.StartRelay(region, port: twoPort);
        var (alice, aliceKey) = await lab.Connect(one);
        var (bob, bobKey) = await lab.Connect(two);
        Assert.True(await RelayLab.Eventually(() => two.MeshRoutesTo(aliceKey.PublicKey) == 1 && one.MeshRoutesTo(bobKey.PublicKey) == 1), "the relays should learn each other's clients");

        bob.TrySend(aliceKey.PublicKey, "across"u8);
        Assert.Equal("across", Encoding.UTF8.GetString((await RelayLab.NextPacket(alice))!.Value.Packet));
        alice.TrySend(bobKey.PublicKey, "back"u8);
        Assert.Equal("back", Encoding.UTF8.GetString((await RelayLab.NextPacket(bob))!.Value.Packet));
        // Neither learned its own clients back from a link to itself.
        Assert.Equal(0, one.MeshRoutesTo(aliceKey.PublicKey));
        Assert.Equal(0, two.MeshRoutesTo(bobKey.PublicKey));
    }

    [Fact]
    public async Task A_mesh_link_whose_peer_fails_the_certificate_check_keeps_dialling_and_its_relay_still_shuts_down_cleanly()
    {
        // One presents a certificate two does not trust (self-signed: a peer mid-renewal, or with its default
        // certificate). The TLS check throws an AuthenticationException, which is not a network error; the link
        // once ended on it for good (and unlogged), leaving the region split until two restarted, and two's
        // shutdown then threw it.
        using var certificate = RelayLab.SelfSignedCertificate("relay-one.test");
        await using var lab = new RelayLab();
        var one = lab.StartRelay(configure: o => o with { Certificate = certificate });
        await using var path = new FreezingProxy(one.LocalEndpoint);
        var two = lab.StartRelay([path.Address with { Tls = true }], configure: o => o with { MeshRetryInterval = TimeSpan.FromMilliseconds(100) });

        Assert.True(await RelayLab.Eventually(() => path.Accepted >= 3, TimeSpan.FromSeconds(10)),
            $"relay two stopped dialling one after its certificate was refused ({path.Accepted} connection(s))");
        Assert.Empty(two.MeshedKeys);
        await two.DisposeAsync(); // no exception: the link's errors stay the link's
    }

    [Fact]
    public async Task A_mesh_link_with_nothing_to_forward_stays_up_past_the_peers_idle_timeout()
    {
        await using var lab = new RelayLab();
        var one = lab.StartRelay(configure: Quick);
        var two = lab.StartRelay([RelayLab.AddressOf(one)], configure: Quick);
        var (alice, aliceKey) = await lab.Connect(one);
        using var stop = new CancellationTokenSource();
        var alive = KeepPinging(alice, stop.Token);
        Assert.True(await RelayLab.Eventually(() => two.MeshedKeys.Contains(aliceKey.PublicKey)), "relay two should learn alice");

        // Two of one's idle checks past its idle timeout, with nothing to forward: two never loses alice, and one cuts
        // nothing as idle.
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(6);
        while (DateTime.UtcNow < until)
        {
            Assert.True(two.MeshedKeys.Contains(aliceKey.PublicKey), $"relay two forgot alice; one refused {Reasons(one.Counters.Snapshot().Refused)} and dropped {Reasons(one.Counters.Snapshot().Dropped)}, two refused {Reasons(two.Counters.Snapshot().Refused)}");
            await Task.Delay(50);
        }
        Assert.Equal(0, one.Counters.RefusedFor("idle_timeout"));
        await stop.CancelAsync();
        await alive;
    }

    [Fact]
    public async Task A_mesh_peer_that_goes_silent_without_closing_is_given_up_and_dialled_again()
    {
        await using var lab = new RelayLab();
        var one = lab.StartRelay(configure: Quick);
        await using var path = new FreezingProxy(one.LocalEndpoint);
        var two = lab.StartRelay([path.Address], configure: Quick);
        var (alice, aliceKey) = await lab.Connect(one);
        var (bob, _) = await lab.Connect(two);
        using var stop = new CancellationTokenSource();
        var alive = Task.WhenAll(KeepPinging(alice, stop.Token), KeepPinging(bob, stop.Token));
        Assert.True(await RelayLab.Eventually(() => two.MeshedKeys.Contains(aliceKey.PublicKey)), "relay two should learn alice");

        // The path to one goes dark: no byte, and no close either. Two hears no pong, gives the link up, forgets
        // what it learned over it, and dials again (a new connection, which flows).
        path.Freeze();
        Assert.True(await RelayLab.Eventually(() => path.Accepted >= 2 && two.MeshRoutesTo(aliceKey.PublicKey) == 1, TimeSpan.FromSeconds(15)),
            $"relay two should dial one again and re-learn alice ({path.Accepted} connection(s) through the path)");
        bob.TrySend(aliceKey.PublicKey, "after the dark"u8);
        var delivered = await RelayLab.NextPacket(alice);
        Assert.True(delivered is not null, "bob's packet did not reach alice over the new link");
        Assert.Equal("after the dark", Encoding.UTF8.GetString(delivered.Value.Packet));
        await stop.CancelAsync();
        await alive;
    }

    [Fact]
    public async Task A_client_that_sent_through_the_mesh_hears_its_peer_left_the_other_relay_and_who_sent_to_whom_is_forgotten()
    {
        await using var lab = new RelayLab();
        var one = lab.StartRelay();
        var two = lab.StartRelay([RelayLab.AddressOf(one)]);
        var (bob, bobKey) = await lab.Connect(one);
        var (alice, _) = await lab.Connect(two);
        Assert.True(await RelayLab.Eventually(() => two.MeshedKeys.Contains(bobKey.PublicKey)), "relay two should learn bob from relay one");
        alice.TrySend(bobKey.PublicKey, "via the mesh"u8);
        Assert.NotNull(await RelayLab.NextPacket(bob));
        Assert.Equal(1, two.KeysWithRecentSenders);

        // bob leaves relay one: alice, on relay two, hears it (as she would for a client of her own relay), and
        // relay two keeps no record of her sending there (it stayed for as long as her connection, up to days).
        await bob.DisposeAsync();
        var gone = await RelayLab.NextFrame(alice, RelayFrameType.PeerGone);
        Assert.NotNull(gone);
        Assert.Equal(bobKey.PublicKey, new Curve25519PublicKey(gone.AsSpan(0, RelayFrame.KeySize)));
        Assert.True(await RelayLab.Eventually(() => two.KeysWithRecentSenders == 0), $"relay two still remembers {two.KeysWithRecentSenders} key(s) sent to");
    }

    [Fact]
    public async Task A_client_on_two_mesh_peers_at_once_stays_reachable_when_one_of_them_says_it_is_gone()
    {
        // The client moved from relay b to relay c, b still held its old connection, and b's "present" reached a
        // after c's (b's link to a was dialled again, say). Then b drops the old connection and says "gone".
        await using var lab = new RelayLab();
        var b = lab.StartRelay();
        var c = lab.StartRelay();
        var a = lab.StartRelay([RelayLab.AddressOf(b), RelayLab.AddressOf(c)]);
        var (onC, key) = await lab.Connect(c);
        Assert.True(await RelayLab.Eventually(() => a.MeshRoutesTo(key.PublicKey) == 1), "a should learn the client from c");
        var (onB, _) = await lab.Connect(b, key);
        Assert.True(await RelayLab.Eventually(() => a.MeshRoutesTo(key.PublicKey) == 2), "a should learn the client from b too");

        await onB.DisposeAsync();
        Assert.True(await RelayLab.Eventually(() => a.MeshRoutesTo(key.PublicKey) == 1), "a should forget b's route only");
        var (alice, _) = await lab.Connect(a);
        alice.TrySend(key.PublicKey, "still reachable"u8);
        var delivered = await RelayLab.NextPacket(onC);
        Assert.True(delivered is not null, "the packet was dropped: relay a forgot the client when b said it was gone");
        Assert.Equal("still reachable", Encoding.UTF8.GetString(delivered.Value.Packet));
    }

    [Fact]
    public async Task A_client_that_roamed_to_a_mesh_peer_is_reached_there_once_its_old_connection_fails_to_answer_while_a_live_one_stays()
    {
        // The client was on relay a; its network changed and it dialled relay b. Its old socket on a has a far end that
        // is gone without a FIN (no packet reaches it, none comes back). Relay a delivers to a client here before any
        // mesh peer: without a probe, a's clients sent it packets into the dead socket until the idle timeout (2 minutes).
        await using var lab = new RelayLab();
        var b = lab.StartRelay();
        var a = lab.StartRelay([RelayLab.AddressOf(b)], configure: o => o with { LivenessProbeTimeout = TimeSpan.FromSeconds(1) });
        await using var path = new FreezingProxy(a.LocalEndpoint);
        using var roamer = Curve25519PrivateKey.Generate();
        await using var old = await RelayClientConnection.ConnectAsync(path.Address, roamer, new ClientInfo { Ticket = lab.Ticket(roamer.PublicKey) }, CancellationToken.None);
        var (sender, _) = await lab.Connect(a);
        Assert.True(await RelayLab.Eventually(() => a.ConnectedKeys.Contains(roamer.PublicKey)));

        path.Freeze();
        var (moved, _) = await lab.Connect(b, roamer);
        Assert.True(await RelayLab.Eventually(() => a.MeshRoutesTo(roamer.PublicKey) == 1), "relay a should learn the client from b");
        (Curve25519PublicKey Source, byte[] Packet)? delivered = null;
        for (var tries = 0; tries < 40 && delivered is null; tries++)
        {
            sender.TrySend(roamer.PublicKey, "where you are now"u8);
            delivered = await RelayLab.NextPacket(moved, TimeSpan.FromMilliseconds(500));
        }
        Assert.True(delivered is not null, $"relay a kept delivering into the old connection (probes unanswered {a.Counters.RefusedFor("unanswered_probe")}, "
            + $"connections of the key on a {a.ConnectionCountOf(roamer.PublicKey)}, routes {a.MeshRoutesTo(roamer.PublicKey)}, meshed {a.Counters.PacketsMeshed}, forwarded on b {b.Counters.PacketsForwarded})");
        Assert.Equal("where you are now", Encoding.UTF8.GetString(delivered.Value.Packet));
        Assert.Equal(1, a.Counters.RefusedFor("unanswered_probe"));
        Assert.DoesNotContain(roamer.PublicKey, a.ConnectedKeys);

        // A client that is on both at once and reads (it answers the ping) keeps its connection here, which still wins.
        using var both = Curve25519PrivateKey.Generate();
        var (onA, _) = await lab.Connect(a, both);
        var reading = RelayLab.NextPacket(onA, TimeSpan.FromSeconds(10));
        await lab.Connect(b, both);
        Assert.True(await RelayLab.Eventually(() => a.MeshRoutesTo(both.PublicKey) == 1), "relay a should learn the second client from b");
        await Task.Delay(TimeSpan.FromSeconds(2)); // twice the probe's time
        Assert.Contains(both.PublicKey, a.ConnectedKeys);
        Assert.Equal(1, a.Counters.RefusedFor("unanswered_probe"));
        sender.TrySend(both.PublicKey, "here"u8);
        Assert.Equal("here", Encoding.UTF8.GetString((await reading)!.Value.Packet));
    }

    [Fact]
    public async Task A_mesh_peer_whose_name_names_this_relay_is_looked_up_again_as_it_may_name_another_later()
    {
        // A headless service's stale answer, or a floating address that moved, makes a peer's name resolve to this relay
        // once. The link gave up for good, and the region stayed split until this relay restarted.
        await using var lab = new RelayLab();
        var port = RelayLab.FreePort();
        var lookups = 0;
        lab.StartRelay([new RelayNodeAddress("relay-b.mesh.test", port)], port: port, configure: o => o with
        {
            ResolveHost = (_, _) =>
            {
                Interlocked.Increment(ref lookups);
                return Task.FromResult(new[] { System.Net.IPAddress.Loopback }); // this relay, every time
            },
        });
        Assert.True(await RelayLab.Eventually(() => Volatile.Read(ref lookups) >= 3), $"looked up {lookups} time(s)");
    }
}
