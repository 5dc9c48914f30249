using Akka.Actor;
using System.Collections.Immutable;
using System.Diagnostics;
using System.Net;
using Weft.Contracts.Keys;
using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.Tunnels;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Tunnels;

/// <summary>The TunnelSupervisor turning netmap peers into tunnels: adds, removals, endpoint moves and key rotations, on two engines over real UDP.</summary>
public sealed class MeshReconcileTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);
    private readonly EngineNode _a;
    private readonly EngineNode _b;

    public MeshReconcileTests()
    {
        _a = new EngineNode(Sys, "a");
        _b = new EngineNode(Sys, "b");
    }

    private static MeshPeer PeerFor(string id, Curve25519PublicKey key, Endpoint endpoint, params string[] allowed) =>
        new(id, key, [.. allowed.Select(IpPrefix.Parse)], [endpoint]);

    private MeshApplied Apply(EngineNode node, params MeshPeer[] peers) =>
        node.Supervisor.Ask<MeshApplied>(new ApplyMesh(peers), Timeout).GetAwaiter().GetResult();

    /// <summary>What the node's engine dropped, by reason (for a failure message).</summary>
    private static string Drops(EngineNode node) =>
        string.Join(", ", node.Device.Counters.Snapshot().Where(d => d.Value > 0).Select(d => $"{d.Key} {d.Value}").DefaultIfEmpty("none"));

    /// <summary>Waits for the node's supervisor to answer a question: it has finished whatever was in its mailbox before, a restart included.</summary>
    private static Task Answers(EngineNode node) => node.Supervisor.Ask<TunnelStatsReply>(GetTunnelStats.Instance, Timeout);

    /// <summary>
    /// A session between a (its supervisor under a restarting parent) and b, then a crash of a's supervisor:
    /// returns once the new instance runs, with the engine and its sessions as they were. Returns b as a's
    /// netmap names it. b has recorded its one handshake by then: as the responder, it records it when its
    /// tunnel actor hears that the first packet confirmed the session, which may come after the packet
    /// reached the TUN (counted, not timed: a LastHandshake read too early is null, and no time is greater).
    /// </summary>
    private async Task<MeshPeer> ConnectThenCrashSupervisor(EngineNode a, EngineNode b)
    {
        var peerB = PeerFor("dev-b", b.Key.PublicKey, b.Endpoint, "100.64.0.2/32");
        Apply(a, peerB);
        Apply(b, PeerFor("dev-a", a.Key.PublicKey, a.Endpoint, "100.64.0.1/32"));
        a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"));
        b.Receive();
        await AwaitConditionAsync(() => Task.FromResult(b.PeerOf(a).HandshakesCompleted == 1), Timeout);

        a.Supervisor.Tell(Kill.Instance); // a crash: the actor restarts, the engine and its sessions stay
        await Answers(a); // the restart is done, so what follows meets the new instance
        await Task.Delay(100); // past the 16.8 ms TAI64N tick of the last initiation
        return peerB;
    }

    private void Connect()
    {
        Assert.Equal(new MeshApplied(1, 0, 0, 0), Apply(_a, PeerFor("dev-b", _b.Key.PublicKey, _b.Endpoint, "100.64.0.2/32")));
        Assert.Equal(new MeshApplied(1, 0, 0, 0), Apply(_b, PeerFor("dev-a", _a.Key.PublicKey, _a.Endpoint, "100.64.0.1/32")));
    }

    [Fact]
    public void Netmap_peers_become_tunnels_and_an_unchanged_netmap_changes_nothing()
    {
        Connect();
        var packet = TestPackets.Ipv4("100.64.0.1", "100.64.0.2");
        _a.Tun.Inject(packet);
        Assert.Equal(packet, _b.Receive());

        Assert.Equal(new MeshApplied(0, 0, 0, 0), Apply(_a, PeerFor("dev-b", _b.Key.PublicKey, _b.Endpoint, "100.64.0.2/32")));
        Assert.Equal(["100.64.0.2/32"], _a.Device.AllowedIps.PrefixesOf(_a.PeerOf(_b)).Select(p => p.ToString()).ToArray());
    }

    [Fact]
    public async Task A_packet_staged_before_its_peers_tunnel_exists_is_sent_once_the_tunnel_starts()
    {
        // The engine learns the peer and a packet is staged for it before its PeerTunnel runs: the
        // handshake request goes nowhere. The tunnel, when it starts, must start the handshake itself.
        var peer = _a.Device.AddPeer(_b.Key.PublicKey);
        peer.Endpoint = _b.Endpoint;
        _a.Device.AllowedIps.Insert(IpPrefix.Parse("100.64.0.2/32"), peer);
        _b.Trust(_a, "100.64.0.1/32");
        var packet = TestPackets.Ipv4("100.64.0.1", "100.64.0.2");
        _a.Tun.Inject(packet);
        AwaitCondition(() => peer.StagedCount == 1, Timeout);

        await _a.Supervisor.Ask<PeerConfigured>(new ConfigurePeer(new PeerConfig(_b.Key.PublicKey)), Timeout);
        Assert.Equal(packet, _b.Receive());
    }

    [Fact]
    public void A_peer_missing_from_the_netmap_is_removed_and_its_packets_refused()
    {
        Connect();
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"));
        _b.Receive();

        Assert.Equal(new MeshApplied(0, 1, 0, 0), Apply(_b));
        Assert.Empty(_b.Device.Peers);
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"));
        Assert.False(_b.TryReceive(TimeSpan.FromMilliseconds(500), out _));
    }

    [Fact]
    public async Task A_rotated_peer_key_keeps_the_tunnel_and_handshakes_under_the_new_key()
    {
        Connect();
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"));
        _b.Receive();
        var handshakeBefore = _a.PeerOf(_b).LastHandshake;
        Assert.NotNull(handshakeBefore); // a, the initiator, records it before it sends the packet (a null would never compare greater)
        // Initiation timestamps have a granularity of 16.8 ms (TAI64N whitening); a second initiation
        // inside the same tick would be refused as a replay. Real rotations come minutes after a handshake.
        Thread.Sleep(50);

        // b rotates: its engine takes the new key but keeps its sessions; a learns the key from the netmap.
        var rotated = Curve25519PrivateKey.Generate();
        await _b.Supervisor.Ask<PrivateKeySet>(new SetPrivateKey(rotated, Rotation: true), Timeout);
        var packet = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: 7);
        _a.Tun.Inject(packet);
        Assert.Equal(packet, _b.Receive()); // the old session still carries traffic

        Assert.Equal(new MeshApplied(0, 0, 1, 0), Apply(_a, PeerFor("dev-b", rotated.PublicKey, _b.Endpoint, "100.64.0.2/32")));
        Assert.False(_a.Device.Peers.ContainsKey(_b.Key.PublicKey));
        var peer = _a.Device.Peers[rotated.PublicKey];
        AwaitCondition(() => peer.LastHandshake > handshakeBefore, Timeout);
        var after = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: 9);
        _a.Tun.Inject(after);
        Assert.Equal(after, _b.Receive());
    }

    [Fact]
    public void A_peer_that_stops_advertising_its_endpoint_is_dialled_at_its_new_one()
    {
        var old = Endpoint.Parse("198.18.0.9:41641");
        var fresh = Endpoint.Parse("198.18.0.10:41641");
        Assert.Equal(old, MeshPeer.ChooseEndpoint(null, [old, fresh]));
        Assert.Equal(fresh, MeshPeer.ChooseEndpoint(fresh, [old, fresh])); // in use and still advertised: kept
        Assert.Equal(fresh, MeshPeer.ChooseEndpoint(old, [fresh]));
        Assert.Equal(old, MeshPeer.ChooseEndpoint(old, ImmutableArray<Endpoint>.Empty)); // nothing advertised: keep what works
        Assert.Null(MeshPeer.ChooseEndpoint(null, ImmutableArray<Endpoint>.Empty)); // not reported yet

        Apply(_a, PeerFor("dev-b", _b.Key.PublicKey, old, "100.64.0.2/32"));
        Assert.Equal(new MeshApplied(0, 0, 0, 1), Apply(_a, PeerFor("dev-b", _b.Key.PublicKey, fresh, "100.64.0.2/32")));
        Assert.Equal(fresh, _a.PeerOf(_b).Endpoint);
    }

    [Fact]
    public async Task A_change_of_some_peers_updates_them_and_leaves_the_others_where_a_whole_netmap_removes_them()
    {
        Connect();
        using var c = Curve25519PrivateKey.Generate();
        var peerB = PeerFor("dev-b", _b.Key.PublicKey, _b.Endpoint, "100.64.0.2/32");
        var peerC = PeerFor("dev-c", c.PublicKey, Endpoint.Parse("198.18.0.3:41641"), "100.64.0.3/32");
        Assert.Equal(new MeshApplied(1, 0, 0, 0), Apply(_a, peerB, peerC));

        // c rotated its key: only c is named, b stays and still carries traffic.
        using var rotated = Curve25519PrivateKey.Generate();
        var partial = await _a.Supervisor.Ask<MeshApplied>(new ApplyMesh([peerC with { Key = rotated.PublicKey }]) { PeersOnly = true }, Timeout);
        Assert.Equal(new MeshApplied(0, 0, 1, 0), partial);
        Assert.Equal(2, _a.Device.Peers.Count);
        Assert.True(_a.Device.Peers.ContainsKey(rotated.PublicKey));
        var packet = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: 5);
        _a.Tun.Inject(packet);
        Assert.Equal(packet, _b.Receive());

        // The same list as a whole netmap: b is gone.
        Assert.Equal(new MeshApplied(0, 1, 0, 0), Apply(_a, peerC with { Key = rotated.PublicKey }));
        Assert.Single(_a.Device.Peers);
    }

    [Fact]
    public void A_node_key_that_leaves_and_comes_back_as_another_device_in_one_netmap_gets_a_tunnel_and_the_rest_of_the_netmap_applies()
    {
        // An admin deleted device dev-b, and its agent joined again with the same node key as dev-b2. A peer that
        // was away meanwhile gets one full map: dev-b gone, dev-b2 (the same key) and dev-c new. The old tunnel is
        // still stopping when the new one starts, so the two must not need the same name.
        using var c = new EngineNode(Sys, "c");
        c.Trust(_a, "100.64.0.1/32");
        Connect();

        Assert.Equal(new MeshApplied(2, 1, 0, 0), Apply(_a,
            PeerFor("dev-b2", _b.Key.PublicKey, _b.Endpoint, "100.64.0.2/32"),
            PeerFor("dev-c", c.Key.PublicKey, c.Endpoint, "100.64.0.3/32")));

        Assert.Equal("dev-b2", _a.PeerOf(_b).MeshId);
        var toB = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: 4);
        _a.Tun.Inject(toB);
        Assert.Equal(toB, _b.Receive());
        var toC = TestPackets.Ipv4("100.64.0.1", "100.64.0.3", fill: 6);
        _a.Tun.Inject(toC);
        Assert.Equal(toC, c.Receive());
    }

    [Fact]
    public async Task A_tunnel_stopped_after_failing_past_its_restart_limit_is_started_again_and_answers_the_peer()
    {
        Connect();
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"));
        _b.Receive();
        var b2a = _b.PeerOf(_a);
        await AwaitConditionAsync(() => Task.FromResult(b2a.HandshakesCompleted == 1), Timeout);

        // Eleven failures within a minute: the supervisor restarts the tunnel ten times, then stops it.
        var failing = await _a.TunnelFor(_b).ResolveOne(Timeout);
        Watch(failing);
        for (var i = 0; i < 11; i++) failing.Tell(Kill.Instance);
        ExpectTerminated(failing, Timeout);
        await Answers(_a);

        // The peer still has a tunnel at a: a handshake b starts is answered (without one, a refuses each of b's
        // initiations, 5 s apart, and no answer ever comes).
        await Task.Delay(50); // past the 16.8 ms TAI64N tick of the last initiation
        _b.Supervisor.Tell(Rekey.Instance);
        var patience = Stopwatch.StartNew();
        while (b2a.HandshakesCompleted < 2 && patience.Elapsed < TimeSpan.FromSeconds(15)) await Task.Delay(50);
        Assert.True(b2a.HandshakesCompleted >= 2, $"b's rekey was not answered ({b2a.HandshakesCompleted} handshakes); drops at a: {Drops(_a)}; at b: {Drops(_b)}");
        Assert.NotEqual(failing, await _a.TunnelFor(_b).ResolveOne(Timeout));
    }

    [Fact]
    public async Task A_tunnel_restarted_while_its_initiation_goes_unanswered_sends_the_next_one_itself_and_the_waiting_packet_arrives()
    {
        // b does not know a yet: a's first initiation is dropped there.
        Apply(_a, PeerFor("dev-b", _b.Key.PublicKey, _b.Endpoint, "100.64.0.2/32"));
        var packet = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: 7);
        _a.Tun.Inject(packet);
        var a2b = _a.PeerOf(_b);
        await AwaitConditionAsync(() => Task.FromResult(a2b.LastHandshakeSent > 0), Timeout);

        // a's tunnel fails and is restarted: the handshake in flight goes with the old instance, the packet stays staged.
        var tunnel = await _a.TunnelFor(_b).ResolveOne(Timeout);
        tunnel.Tell(Kill.Instance);
        await Answers(_a);
        Apply(_b, PeerFor("dev-a", _a.Key.PublicKey, _a.Endpoint, "100.64.0.1/32"));

        // Nothing else is sent: the new tunnel retransmits once REKEY_TIMEOUT allows, and the packet goes through.
        Assert.True(_b.TryReceive(TimeSpan.FromSeconds(15), out var received), $"the staged packet never arrived; drops at a: {Drops(_a)}; at b: {Drops(_b)}");
        Assert.Equal(packet, received);
    }

    [Fact]
    public async Task A_session_a_sleep_outlived_is_dropped_and_the_next_packet_makes_a_new_one_while_a_short_sleep_keeps_it()
    {
        Connect();
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"));
        _b.Receive();
        var a2b = _a.PeerOf(_b);
        var session = a2b.Current;
        Assert.NotNull(session);
        var handshakes = a2b.HandshakesCompleted + _b.PeerOf(_a).HandshakesCompleted;

        // A nap shorter than REJECT_AFTER_TIME: the peer still holds the session.
        _a.Supervisor.Tell(new MachineSlept(TimeSpan.FromSeconds(40)));
        await Answers(_a);
        await Task.Delay(200); // the tunnels take it after the supervisor
        Assert.Same(session, a2b.Current);

        // A night: the peer dropped the session hours ago. It goes here too, and the next packet starts a handshake.
        _a.Supervisor.Tell(new MachineSlept(TimeSpan.FromHours(8)));
        await AwaitConditionAsync(() => Task.FromResult(a2b.Current is null || !ReferenceEquals(a2b.Current, session)), Timeout);
        var after = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: 9);
        _a.Tun.Inject(after);
        Assert.Equal(after, _b.Receive());
        Assert.True(a2b.HandshakesCompleted + _b.PeerOf(_a).HandshakesCompleted > handshakes, "the packet went out on the session the sleep outlived");
        Assert.NotSame(session, a2b.Current);
    }

    [Fact]
    public async Task A_restarted_supervisor_gives_every_engine_peer_its_tunnel_again_and_still_reconciles_them()
    {
        using var a = new EngineNode(Sys, "restarted-a", restartable: true);
        using var b = new EngineNode(Sys, "restarted-b");
        var peerB = await ConnectThenCrashSupervisor(a, b);

        // The session in the engine still carries traffic.
        var during = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: 3);
        a.Tun.Inject(during);
        Assert.Equal(during, b.Receive());
        // The peer has its tunnel again: its actor is there (ResolveOne throws ActorNotFoundException if not).
        await a.TunnelFor(b).ResolveOne(Timeout);
        // The netmap still finds the peer in the engine: unchanged changes nothing, a rotation re-keys it, a removal removes it.
        Assert.Equal(new MeshApplied(0, 0, 0, 0), Apply(a, peerB));
        var rotated = Curve25519PrivateKey.Generate();
        Assert.Equal(new MeshApplied(0, 0, 1, 0), Apply(a, peerB with { Key = rotated.PublicKey }));
        Assert.Equal(new MeshApplied(0, 1, 0, 0), Apply(a));
        Assert.Empty(a.Device.Peers);
    }

    [Fact]
    public async Task After_a_supervisor_restart_a_handshake_the_peer_starts_is_answered()
    {
        using var a = new EngineNode(Sys, "rekeyed-a", restartable: true);
        using var b = new EngineNode(Sys, "rekeyed-b");
        await ConnectThenCrashSupervisor(a, b);
        var b2a = b.PeerOf(a);

        // The peer has its tunnel again: a handshake b starts is answered. The wait spans two of b's
        // retransmissions (5 s apart), and a failure says what each engine dropped. Without its tunnel, a
        // refuses each of b's initiations (HandshakeRejected: 3 in 15 s), and no answer ever comes.
        b.Supervisor.Tell(Rekey.Instance);
        var patience = Stopwatch.StartNew();
        while (b2a.HandshakesCompleted < 2 && patience.Elapsed < TimeSpan.FromSeconds(15)) await Task.Delay(50);
        Assert.True(b2a.HandshakesCompleted >= 2,
            $"b's rekey was not answered in {patience.Elapsed.TotalSeconds:0.0} s ({b2a.HandshakesCompleted} handshakes); drops at a: {Drops(a)}; at b: {Drops(b)}; a's handshake backlog {a.Device.HandshakeBacklog}");
    }

    [Fact]
    public async Task A_supervisor_restarting_keeps_every_handshake_the_engine_hands_it()
    {
        using var a = new EngineNode(Sys, "restarting-a", restartable: true);
        // Peers make each restart take a while: their tunnels stop, and start again in the new instance.
        var unreachable = new Endpoint(new IPEndPoint(IPAddress.Loopback, 9));
        for (var i = 0; i < 100; i++)
        {
            using var peerKey = Curve25519PrivateKey.Generate();
            a.TrustKey(peerKey.PublicKey, unreachable, $"100.64.1.{i}/32");
        }
        // Initiations with a valid mac1 from keys a does not know: the engine hands each to the supervisor,
        // which rejects it. Paced, so that the engine never comes under load and asks for cookies instead.
        var initiations = new StrangerInitiations(a, distinct: 16, pause: TimeSpan.FromMilliseconds(1));
        using (initiations)
        {
            for (var i = 0; i < 40; i++)
            {
                a.Supervisor.Tell(Kill.Instance);
                await Answers(a); // the restart is done
            }
        }
        await Answers(a); // what the engine handed over before the sender stopped has been processed

        var counters = a.Device.Counters;
        Assert.True(counters[DropReason.CookieRequired] == 0, "the engine came under load; the test must pace its initiations slower");
        Assert.True(counters[DropReason.HandshakeRejected] > 0, $"none of the {initiations.Sent} initiations reached the supervisor");
        // Before, a restart cleared the engine's handshake sink until the new instance set it again, and
        // every initiation in between was dropped as if the queue were full.
        Assert.Equal(0L, counters[DropReason.HandshakeQueueFull]);
        Assert.Equal(100, a.Device.Peers.Count);
    }

    public new void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
        base.Dispose();
    }
}
