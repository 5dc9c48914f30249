using Akka.Actor;
using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.Tunnels;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

/// <summary>
/// Rekey, reject, keepalive and key-zeroing timing, on two real engines whose clock moves only when
/// the test says so. The periodic timer tick is off; the test sends EvaluateTimers itself.
/// </summary>
public sealed class TimerDrivenSessionTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private readonly ManualClock _clock = new();
    private readonly EngineNode _a;
    private readonly EngineNode _b;

    public TimerDrivenSessionTests()
    {
        _a = new EngineNode(Sys, "a", _clock, tick: false);
        _b = new EngineNode(Sys, "b", _clock, tick: false);
        _a.Trust(_b, "100.64.0.2/32");
        _b.Trust(_a, "100.64.0.1/32");
        // Establish a session: A initiates.
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"));
        _b.Receive();
        AwaitCondition(() => _b.PeerOf(_a).Current is not null, TimeSpan.FromSeconds(5));
    }

    /// <summary>
    /// The tunnel evaluates its timers, and the test waits until it has (an Identify queued behind the
    /// tick is answered after it): a tick still in the mailbox when the test next advances the clock
    /// would run at the later time.
    /// </summary>
    private static void Tick(EngineNode node, EngineNode peer)
    {
        node.TunnelFor(peer).Tell(EvaluateTimers.Instance);
        AwaitHandled(node, peer);
    }

    /// <summary>Waits until the tunnel has handled everything sent to it before (an Identify is answered in turn).</summary>
    private static void AwaitHandled(EngineNode node, EngineNode peer)
    {
        var identity = node.TunnelFor(peer).Ask<ActorIdentity>(new Identify(null), TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();
        Assert.NotNull(identity.Subject);
    }

    private void RoundTrip()
    {
        var packet = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: (byte)Random.Shared.Next(256));
        _a.Tun.Inject(packet);
        Assert.Equal(packet, _b.Receive());
    }

    [Fact]
    public void After_rekey_after_time_the_initiator_starts_a_new_session_while_traffic_flows()
    {
        var first = _a.PeerOf(_b).Current!;
        _clock.Advance(TimeSpan.FromSeconds(121));

        RoundTrip(); // still sent on the old keypair (not yet rejected), and triggers the rekey
        AwaitCondition(() => _a.PeerOf(_b).Current is { } k && k != first, TimeSpan.FromSeconds(5));
        RoundTrip();
        Assert.Same(first, _a.PeerOf(_b).Previous);
    }

    [Fact]
    public void After_reject_after_time_packets_wait_for_a_new_handshake_and_then_arrive()
    {
        var first = _a.PeerOf(_b).Current!;
        _clock.Advance(TimeSpan.FromSeconds(181));
        Assert.False(first.CanSend(_clock.NowMs, WireGuardTimings.Default));

        var packet = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: 0x11);
        _a.Tun.Inject(packet);
        Assert.Equal(packet, _b.Receive()); // staged, then sent once the new session exists
        Assert.NotSame(first, _a.PeerOf(_b).Current);
    }

    [Fact]
    public void Without_a_new_session_key_material_is_zeroed_after_three_reject_times()
    {
        // B answers A's data with its passive keepalive, so no side is left waiting for an answer
        // (which would start a new session and push the zeroing back).
        _clock.Advance(TimeSpan.FromSeconds(10));
        Tick(_b, _a);
        AwaitCondition(() => _a.PeerOf(_b).LastAuthenticatedReceived == _clock.NowMs, TimeSpan.FromSeconds(5));
        Assert.Equal(0, _a.PeerOf(_b).FirstUnansweredDataSent);
        Assert.NotNull(_a.PeerOf(_b).Current);
        _clock.Advance(TimeSpan.FromSeconds(529));
        Tick(_a, _b);
        Tick(_b, _a);
        AwaitAssert(() => Assert.NotNull(_a.PeerOf(_b).Current), TimeSpan.FromSeconds(1));

        _clock.Advance(TimeSpan.FromSeconds(2));
        Tick(_a, _b);
        Tick(_b, _a);
        AwaitCondition(() => _a.PeerOf(_b).Current is null && _b.PeerOf(_a).Current is null, TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void A_tunnel_that_restarts_still_zeroes_the_key_material_three_reject_times_after_its_session_began()
    {
        // As above, but A's tunnel crashes and its supervisor restarts it: the new incarnation has no
        // timer state, only the keypairs the engine still holds. Their age says when to zero them.
        _clock.Advance(TimeSpan.FromSeconds(10));
        Tick(_b, _a);
        AwaitCondition(() => _a.PeerOf(_b).LastAuthenticatedReceived == _clock.NowMs, TimeSpan.FromSeconds(5));
        _a.TunnelFor(_b).Tell(Kill.Instance);
        Tick(_a, _b); // handled by the new incarnation
        Assert.NotNull(_a.PeerOf(_b).Current);

        _clock.Advance(TimeSpan.FromSeconds(529));
        Tick(_a, _b);
        AwaitAssert(() => Assert.NotNull(_a.PeerOf(_b).Current), TimeSpan.FromSeconds(1));

        _clock.Advance(TimeSpan.FromSeconds(2));
        Tick(_a, _b);
        AwaitCondition(() => _a.PeerOf(_b).Current is null && _a.PeerOf(_b).Previous is null && _a.PeerOf(_b).Next is null, TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void A_receiver_that_sends_nothing_answers_with_a_keepalive_after_10_seconds()
    {
        RoundTrip();
        var bLastSent = _b.PeerOf(_a).LastAuthenticatedSent;
        Assert.NotEqual(0, _b.PeerOf(_a).FirstUnansweredDataReceived);

        _clock.Advance(TimeSpan.FromSeconds(9));
        Tick(_b, _a);
        Assert.Equal(bLastSent, _b.PeerOf(_a).LastAuthenticatedSent); // not yet due

        _clock.Advance(TimeSpan.FromSeconds(1));
        var aReceived = _a.PeerOf(_b).RxBytes;
        Tick(_b, _a);
        AwaitCondition(() => _a.PeerOf(_b).RxBytes == aReceived + Messages.KeepaliveSize, TimeSpan.FromSeconds(5));
        Assert.Equal(0, _b.PeerOf(_a).FirstUnansweredDataReceived);
    }

    [Fact]
    public async Task Persistent_keepalive_keeps_sending_at_its_interval()
    {
        // B answers with data, so neither side is waiting on the other: only the keepalive timer runs.
        var reply = TestPackets.Ipv4("100.64.0.2", "100.64.0.1");
        _b.Tun.Inject(reply);
        Assert.Equal(reply, _a.Receive());
        var session = _a.PeerOf(_b).Current;

        var before = _b.PeerOf(_a).RxBytes;
        await _a.Supervisor.Ask<PeerConfigured>(new ConfigurePeer(new PeerConfig(_b.Key.PublicKey) { PersistentKeepaliveSeconds = 25 }));
        AwaitCondition(() => _b.PeerOf(_a).RxBytes == before + Messages.KeepaliveSize, TimeSpan.FromSeconds(5)); // one at once

        for (var round = 0; round < 3; round++)
        {
            _clock.Advance(TimeSpan.FromSeconds(24));
            Tick(_a, _b);
            _clock.Advance(TimeSpan.FromSeconds(1));
            var dueAt = _clock.NowMs;
            Tick(_a, _b);
            AwaitCondition(() => _b.PeerOf(_a).LastAuthenticatedReceived == dueAt, TimeSpan.FromSeconds(5));
        }
        Assert.Same(session, _a.PeerOf(_b).Current); // keepalives, not handshakes
        Assert.Equal(before + 4 * Messages.KeepaliveSize, _b.PeerOf(_a).RxBytes);
    }

    [Fact]
    public async Task An_answer_that_arrives_before_the_sender_is_back_from_sending_leaves_no_data_waiting_for_one()
    {
        var first = TestPackets.Ipv4("100.64.0.2", "100.64.0.1");
        _b.Tun.Inject(first);
        Assert.Equal(first, _a.Receive()); // B's keypair is confirmed: B may answer at once

        // A and B reach each other through a relay that delivers on the sender's thread, and B answers each
        // packet of A's as it gets it: the answer is in before A's send returns, the earliest it can be.
        var aAsBSeesIt = Endpoint.ForRelay(1, _a.Key.PublicKey);
        var bAsASeesIt = Endpoint.ForRelay(1, _b.Key.PublicKey);
        var answer = TestPackets.Ipv4("100.64.0.2", "100.64.0.1", fill: 0x5a);
        _b.Device.Relays = new RelayOnThisThread(packet => _a.Device.ReceiveRelayed(packet, bAsASeesIt));
        _a.Device.Relays = new RelayOnThisThread(packet =>
        {
            _b.Device.ReceiveRelayed(packet, aAsBSeesIt);
            Assert.True(_b.Device.SendTransport(_b.PeerOf(_a), answer));
        });
        await _a.Supervisor.Ask<PeerConfigured>(new ConfigurePeer(new PeerConfig(_b.Key.PublicKey) { Endpoint = bAsASeesIt }));
        await _b.Supervisor.Ask<PeerConfigured>(new ConfigurePeer(new PeerConfig(_a.Key.PublicKey) { Endpoint = aAsBSeesIt }));

        // A packet from the TUN (the batch path), then one that no peer routes: the TUN reader takes packets
        // in order, so once it has dropped the second it is done with the first.
        var unrouted = _a.Device.Counters[DropReason.NoRoute];
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: 0x11));
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.99"));
        Assert.Equal(answer, _a.Receive());
        AwaitCondition(() => _a.Device.Counters[DropReason.NoRoute] == unrouted + 1, TimeSpan.FromSeconds(5));
        Assert.Equal(0, _a.PeerOf(_b).FirstUnansweredDataSent);

        // And one sent on its own, as staged packets and keepalives leave.

        Assert.True(_a.Device.SendTransport(_a.PeerOf(_b), TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: 0x22)));
        Assert.Equal(answer, _a.Receive());
        Assert.Equal(0, _a.PeerOf(_b).FirstUnansweredDataSent);
    }

    [Fact]
    public void Data_that_arrives_while_the_handshake_response_is_leaving_still_waits_for_its_answer()
    {
        using var responder = new EngineNode(Sys, "responder", _clock, tick: false);
        using var initiator = new EngineNode(Sys, "initiator", _clock, tick: false);
        var responderAsSeen = Endpoint.ForRelay(1, responder.Key.PublicKey);
        var initiatorAsSeen = Endpoint.ForRelay(1, initiator.Key.PublicKey);
        var responses = 0;
        initiator.Device.Relays = new RelayOnThisThread(packet => responder.Device.ReceiveRelayed(packet, initiatorAsSeen));
        responder.Device.Relays = new RelayOnThisThread(packet =>
        {
            // The initiator's first data, in before the responder's thread is back from sending the response
            // (the response itself goes no further, so that nothing else answers or is answered).
            Assert.Equal(Messages.TypeResponse, Messages.TypeOf(packet));
            responder.PeerOf(initiator).OnDataReceived(_clock.NowMs);
            Interlocked.Increment(ref responses);
        });
        initiator.TrustKey(responder.Key.PublicKey, responderAsSeen, "100.64.0.2/32");
        responder.TrustKey(initiator.Key.PublicKey, initiatorAsSeen, "100.64.0.1/32");

        initiator.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"));
        AwaitCondition(() => Volatile.Read(ref responses) == 1, TimeSpan.FromSeconds(5));
        AwaitHandled(responder, initiator);

        Assert.Equal(_clock.NowMs, responder.PeerOf(initiator).FirstUnansweredDataReceived);
    }

    private sealed class RelayOnThisThread(Action<byte[]> deliver) : IRelayTransport
    {
        public bool Send(int region, Weft.Contracts.Keys.Curve25519PublicKey destination, ReadOnlySpan<byte> packet)
        {
            deliver(packet.ToArray());
            return true;
        }
    }

    [Fact]
    public void An_unanswered_handshake_is_retried_every_rekey_timeout_and_abandoned_after_the_last_attempt()
    {
        using var silent = new UdpTap(new Endpoint(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 9))); // answers nothing
        var ghost = Weft.Contracts.Keys.Curve25519PrivateKey.Generate().PublicKey;
        _a.TrustKey(ghost, silent.Endpoint, "100.64.0.99/32");
        _a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.99"));
        AwaitCondition(() => silent.Recorded.Count == 1, TimeSpan.FromSeconds(5));
        var tunnel = _a.TunnelFor(ghost);

        for (var attempt = 2; attempt <= 20; attempt++)
        {
            _clock.Advance(TimeSpan.FromMilliseconds(5_400));
            tunnel.Tell(EvaluateTimers.Instance);
            var expected = attempt;
            AwaitCondition(() => silent.Recorded.Count == expected, TimeSpan.FromSeconds(5));
        }
        Assert.All(silent.Recorded, m => Assert.Equal(Messages.TypeInitiation, Messages.TypeOf(m)));
        Assert.Equal(1, _a.Device.Peers[ghost].StagedCount);

        // The 21st would exceed the attempts: the handshake is abandoned and the waiting packet dropped.
        _clock.Advance(TimeSpan.FromMilliseconds(5_400));
        tunnel.Tell(EvaluateTimers.Instance);
        AwaitCondition(() => _a.Device.Peers[ghost].StagedCount == 0, TimeSpan.FromSeconds(5));
        _clock.Advance(TimeSpan.FromSeconds(10));
        tunnel.Tell(EvaluateTimers.Instance);
        Thread.Sleep(200);
        Assert.Equal(20, silent.Recorded.Count);
    }

    public new void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
        base.Dispose();
    }
}
