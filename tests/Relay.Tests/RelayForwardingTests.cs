using System.Net.Sockets;
using System.Text;
using Weft.Contracts.Disco;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay.Tests;

/// <summary>A real relay on loopback: admitted clients reach each other by node key, and hear when a peer is gone.</summary>
public class RelayForwardingTests
{
    private const int RaceRounds = 100_000;

    /// <summary>
    /// A client reconnects (its relay client restarted, or it roamed) just as its old connection closes.
    /// The new connection must stay in the registry, or no packet reaches the client until it reconnects
    /// again; and the region's other relays (watchers) must hear "gone" before "present", or they stop
    /// forwarding to a client that is here. Before the fix, a fifth to a third of the rounds lost the client.
    /// </summary>
    [Fact]
    public async Task A_client_that_reconnects_as_its_old_connection_closes_stays_reachable_and_its_relays_hear_it_is_present()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        using var node = Curve25519PrivateKey.Generate();
        var watcher = Connection(relay, Curve25519PrivateKey.Generate().PublicKey, isMesh: true);
        relay.AddWatcher(watcher);
        var lostInRounds = new List<int>();
        var goneLastInRounds = new List<int>();
        RelayConnection old = null!, replacement = null!;
        Race(
            setUp: () =>
            {
                old = Connection(relay, node.PublicKey);
                relay.Register(old);
                replacement = Connection(relay, node.PublicKey);
            },
            here: () => relay.Unregister(old),
            there: () => relay.Register(replacement),
            check: round =>
            {
                if (!relay.ConnectedKeys.Contains(node.PublicKey)) lostInRounds.Add(round);
                if (LastPresenceHeard(watcher) != RelayFrameType.PeerPresent) goneLastInRounds.Add(round);
                relay.Unregister(replacement);
                LastPresenceHeard(watcher);
            });
        Assert.True(lostInRounds.Count == 0, $"the new connection was registered nowhere in {lostInRounds.Count} of {RaceRounds} rounds (first: {lostInRounds.FirstOrDefault()})");
        Assert.True(goneLastInRounds.Count == 0, $"the watching relay heard \"gone\" last in {goneLastInRounds.Count} of {RaceRounds} rounds (first: {goneLastInRounds.FirstOrDefault()})");
    }

    /// <summary>
    /// A relay of the region starts watching just as a client leaves: what it hears last about the
    /// client must not be "present", or it forwards to a client that is gone and never hears otherwise.
    /// </summary>
    [Fact]
    public async Task A_relay_that_starts_watching_as_a_client_leaves_does_not_hear_it_is_present_last()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        using var node = Curve25519PrivateKey.Generate();
        var meshKey = Curve25519PrivateKey.Generate().PublicKey;
        var presentLastInRounds = new List<int>();
        RelayConnection client = null!, watcher = null!;
        Race(
            setUp: () =>
            {
                client = Connection(relay, node.PublicKey);
                relay.Register(client);
                watcher = Connection(relay, meshKey, isMesh: true);
            },
            here: () => relay.Unregister(client),
            there: () => relay.AddWatcher(watcher),
            check: round =>
            {
                if (LastPresenceHeard(watcher) == RelayFrameType.PeerPresent) presentLastInRounds.Add(round);
                relay.Unregister(watcher);
            });
        Assert.True(presentLastInRounds.Count == 0, $"the new watcher heard \"present\" last for a client that had left in {presentLastInRounds.Count} of {RaceRounds} rounds (first: {presentLastInRounds.FirstOrDefault()})");
    }

    /// <summary>
    /// <see cref="RaceRounds"/> rounds in which this thread and another do <paramref name="here"/> and
    /// <paramref name="there"/> at the same moment (both released by a barrier), because the window
    /// between two registry changes is a few instructions wide.
    /// </summary>
    private static void Race(Action setUp, Action here, Action there, Action<int> check)
    {
        using var step = new Barrier(2);
        var other = new Thread(() =>
        {
            for (var round = 0; round < RaceRounds; round++)
            {
                step.SignalAndWait(); // set up
                there();
                step.SignalAndWait(); // both done
            }
        });
        other.Start();
        for (var round = 0; round < RaceRounds; round++)
        {
            setUp();
            step.SignalAndWait();
            here();
            step.SignalAndWait();
            check(round);
        }
        other.Join();
    }

    [Fact]
    public async Task A_new_watcher_is_told_every_client_even_far_more_than_a_client_connections_control_queue_holds()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        const int clients = RelayConnection.ClientControlDepth * 4;
        for (var i = 0; i < clients; i++) relay.Register(Connection(relay, Curve25519PrivateKey.Generate().PublicKey));

        var watcher = Connection(relay, Curve25519PrivateKey.Generate().PublicKey, isMesh: true);
        relay.AddWatcher(watcher);
        var present = 0;
        while (watcher.TryTakeQueuedControl(out var frame))
            if ((RelayFrameType)frame[0] == RelayFrameType.PeerPresent) present++;
        Assert.Equal(clients, present);
        Assert.Equal(0, relay.Counters.DroppedFor("mesh_control_overflow"));
    }

    [Fact]
    public async Task A_watcher_that_falls_further_behind_than_its_control_queue_holds_is_closed_rather_than_told_only_part()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay(configure: o => o with { MeshControlQueueDepth = 100 });
        for (var i = 0; i < 101; i++) relay.Register(Connection(relay, Curve25519PrivateKey.Generate().PublicKey));

        var watcher = Connection(relay, Curve25519PrivateKey.Generate().PublicKey, isMesh: true);
        relay.AddWatcher(watcher);

        Assert.Equal(1, relay.Counters.DroppedFor("mesh_control_overflow"));
        Assert.True(watcher.IsClosing, "the watcher's link is closed, so that its peer dials again and hears every client");
    }

    [Fact]
    public async Task A_departure_is_told_to_exactly_those_who_sent_to_it_and_who_sent_to_whom_is_forgotten_as_they_leave()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        RelayConnection Client() => Connection(relay, Curve25519PrivateKey.Generate().PublicKey);
        var (alice, bob, carol, dave) = (Client(), Client(), Client(), Client());
        foreach (var client in new[] { alice, bob, carol, dave }) relay.Register(client);
        var packet = "hello"u8.ToArray();
        relay.Route(alice, bob.Key, packet);
        relay.Route(carol, bob.Key, packet);
        relay.Route(alice, carol.Key, packet);
        relay.Route(alice, Curve25519PrivateKey.Generate().PublicKey, packet); // nobody: not remembered
        Assert.Equal(2, relay.KeysWithRecentSenders); // bob and carol

        relay.Unregister(bob);
        Assert.Equal([bob.Key], GonesHeard(alice));
        Assert.Equal([bob.Key], GonesHeard(carol));
        Assert.Empty(GonesHeard(dave));

        // alice leaves: carol's departure then tells nobody, and nothing is left of who sent to whom.
        relay.Unregister(alice);
        relay.Unregister(carol);
        Assert.Empty(GonesHeard(alice));
        Assert.Equal(0, relay.KeysWithRecentSenders);
    }

    /// <summary>The keys of the PeerGone (disconnected) frames queued for <paramref name="connection"/>, taking every control frame.</summary>
    private static List<Curve25519PublicKey> GonesHeard(RelayConnection connection)
    {
        var gone = new List<Curve25519PublicKey>();
        while (connection.TryTakeQueuedControl(out var frame))
            if ((RelayFrameType)frame[0] == RelayFrameType.PeerGone) gone.Add(new Curve25519PublicKey(frame.AsSpan(RelayFrame.HeaderSize, 32)));
        return gone;
    }

    /// <summary>A registry entry with no socket behind it: what the relay queues for it stays readable.</summary>
    private static RelayConnection Connection(RelayServer relay, Curve25519PublicKey key, bool isMesh = false) =>
        new(relay, Stream.Null, new RelayFrameReader(Stream.Null), key, isMesh, isMesh ? null : new RelayTicket(key, "tn_test", DateTimeOffset.UtcNow.AddHours(1)));

    /// <summary>Takes every control frame queued for <paramref name="connection"/>: the type of the last PeerPresent or PeerGone, if any.</summary>
    private static RelayFrameType? LastPresenceHeard(RelayConnection connection)
    {
        RelayFrameType? last = null;
        while (connection.TryTakeQueuedControl(out var frame))
            if ((RelayFrameType)frame[0] is RelayFrameType.PeerPresent or RelayFrameType.PeerGone) last = (RelayFrameType)frame[0];
        return last;
    }

    [Fact]
    public async Task Two_admitted_clients_exchange_packets_by_node_key_and_see_the_senders_key()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        var (alice, aliceKey) = await lab.Connect(relay);
        var (bob, bobKey) = await lab.Connect(relay);

        Assert.True(alice.TrySend(bobKey.PublicKey, "hello bob"u8));
        var atBob = await RelayLab.NextPacket(bob);
        Assert.Equal(aliceKey.PublicKey, atBob!.Value.Source);
        Assert.Equal("hello bob", Encoding.UTF8.GetString(atBob.Value.Packet));

        Assert.True(bob.TrySend(aliceKey.PublicKey, "hello alice"u8));
        var atAlice = await RelayLab.NextPacket(alice);
        Assert.Equal(bobKey.PublicKey, atAlice!.Value.Source);
        Assert.Equal(2, relay.Counters.PacketsForwarded);
        Assert.Equal(relay.ServerKey, alice.ServerKey);
    }

    [Fact]
    public async Task A_client_that_sent_to_a_peer_hears_peer_gone_when_that_peer_disconnects()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        var (alice, _) = await lab.Connect(relay);
        var (bob, bobKey) = await lab.Connect(relay);
        alice.TrySend(bobKey.PublicKey, "x"u8);
        Assert.NotNull(await RelayLab.NextPacket(bob));

        await bob.DisposeAsync();

        var gone = await RelayLab.NextFrame(alice, RelayFrameType.PeerGone);
        Assert.NotNull(gone);
        Assert.Equal(bobKey.PublicKey, new Curve25519PublicKey(gone.AsSpan(0, 32)));
        Assert.Equal((byte)PeerGoneReason.Disconnected, gone[32]);
    }

    [Fact]
    public async Task Disco_to_a_key_that_is_not_here_is_answered_with_peer_gone_not_here_and_data_is_dropped_and_counted()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        var (alice, _) = await lab.Connect(relay);
        using var nobody = Curve25519PrivateKey.Generate();
        var disco = new byte[DiscoPacket.Overhead + 10];
        DiscoPacket.Magic.CopyTo(disco);

        alice.TrySend(nobody.PublicKey, "data"u8);
        alice.TrySend(nobody.PublicKey, disco);

        var gone = await RelayLab.NextFrame(alice, RelayFrameType.PeerGone);
        Assert.Equal((byte)PeerGoneReason.NotHere, gone![32]);
        Assert.True(await RelayLab.Eventually(() => relay.Counters.DroppedFor("unknown_destination") == 2));
    }

    [Fact]
    public async Task With_two_connections_for_one_key_the_last_one_that_sent_receives_and_the_older_one_is_told()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        var (alice, _) = await lab.Connect(relay);
        var (bobFirst, bobKey) = await lab.Connect(relay);
        var (bobSecond, _) = await lab.Connect(relay, bobKey);

        var health = await RelayLab.NextFrame(bobFirst, RelayFrameType.Health);
        Assert.Contains("another connection", Encoding.UTF8.GetString(health!));
        alice.TrySend(bobKey.PublicKey, "to the newest"u8);
        Assert.Equal("to the newest", Encoding.UTF8.GetString((await RelayLab.NextPacket(bobSecond))!.Value.Packet));
    }

    [Fact]
    public async Task A_key_holds_a_few_connections_at_most_and_one_more_closes_its_oldest_while_the_newest_receives()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay(configure: o => o with { MaxConnectionsPerKey = 3 });
        var (alice, _) = await lab.Connect(relay);
        using var key = Curve25519PrivateKey.Generate();
        var connections = new List<RelayClientConnection>();
        for (var i = 0; i < 6; i++) connections.Add((await lab.Connect(relay, key)).Client);

        Assert.True(await RelayLab.Eventually(() => relay.ConnectionCountOf(key.PublicKey) == 3), $"{relay.ConnectionCountOf(key.PublicKey)} connections for one key");
        Assert.Equal(3, relay.Counters.RefusedFor("too_many_connections_for_key"));
        // The three oldest are the ones closed.
        foreach (var closed in connections[..3])
        {
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while (await closed.ReadAsync(limit.Token) is not null) { } // health frames, then the end
        }
        alice.TrySend(key.PublicKey, "to the newest"u8);
        Assert.Equal("to the newest", Encoding.UTF8.GetString((await RelayLab.NextPacket(connections[^1]))!.Value.Packet));
    }

    [Fact]
    public async Task The_server_answers_pings_and_http_probes_and_refuses_plain_http_elsewhere()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        var (alice, _) = await lab.Connect(relay);
        alice.TrySendFrame(RelayFrame.Build(RelayFrameType.Ping, [1, 2, 3, 4, 5, 6, 7, 8]));
        Assert.Equal([1, 2, 3, 4, 5, 6, 7, 8], await RelayLab.NextFrame(alice, RelayFrameType.Pong));

        Assert.StartsWith("HTTP/1.1 204", await HttpHead(relay, "GET /relay/probe HTTP/1.1\r\nHost: x\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 426", await HttpHead(relay, "GET /relay HTTP/1.1\r\nHost: x\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 404", await HttpHead(relay, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n"));
    }

    private static async Task<string> HttpHead(RelayServer relay, string request)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", relay.LocalEndpoint.Port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        return await RelayProtocol.ReadHttpHeadAsync(stream, CancellationToken.None);
    }

    [Fact]
    public async Task A_client_that_never_reads_loses_its_oldest_packets_and_the_relay_counts_them_while_others_are_served()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay(configure: o => o with { QueueDepth = 4 });
        var (alice, _) = await lab.Connect(relay);
        var (carol, carolKey) = await lab.Connect(relay);
        // A raw client that logs in and then never reads: its socket buffers fill, then its queue.
        using var stalledKey = Curve25519PrivateKey.Generate();
        var stalled = await lab.Connect(relay, stalledKey);
        var packet = new byte[60_000];
        for (var i = 0; i < 2000 && relay.Counters.DroppedFor("queue_full") == 0; i++)
        {
            alice.TrySend(stalledKey.PublicKey, packet);
            if (i % 50 == 0) await Task.Delay(10);
        }
        Assert.True(await RelayLab.Eventually(() => relay.Counters.DroppedFor("queue_full") > 0), "the relay should drop for the stalled client");
        alice.TrySend(carolKey.PublicKey, "still served"u8);
        Assert.Equal("still served", Encoding.UTF8.GetString((await RelayLab.NextPacket(carol))!.Value.Packet));
        GC.KeepAlive(stalled);
    }
}
