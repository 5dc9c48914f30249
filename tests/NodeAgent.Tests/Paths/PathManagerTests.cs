using System.Collections.Immutable;
using Akka.Actor;
using Google.Protobuf;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Paths;
using Weft.NodeAgent.Tests.Support;

namespace Weft.NodeAgent.Tests.Paths;

/// <summary>
/// The PathManager keeping one PathFinder per netmap peer up to date: a change of one peer reaches
/// its finder alone, and a finder that fails or stops is brought back with the peer as the netmap
/// has it now, not as it was when the finder was first made. No relays: a peer's path is its first
/// endpoint until a pong proves one, which is what the finder's status shows.
/// </summary>
public sealed class PathManagerTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);
    private readonly EngineNode _node;
    private readonly Curve25519PrivateKey _peerKey = Curve25519PrivateKey.Generate();
    private readonly Curve25519PrivateKey _peerDisco = Curve25519PrivateKey.Generate();
    private readonly Curve25519PrivateKey _disco = Curve25519PrivateKey.Generate();
    private readonly NetMapStore _store = new();
    private readonly IActorRef _paths;

    public PathManagerTests()
    {
        _node = new EngineNode(Sys, "engine");
        var control = CreateTestProbe();
        _paths = Sys.ActorOf(PathManager.PropsFor(_node.Device, control.Ref, new LocalAddressSource(null, ["127.0.0.1:41641"], false, TimeSpan.FromMinutes(5))), "paths");
        control.ExpectMsg<WatchControl>(Timeout);
        _paths.Tell(new DiscoKeyChanged(_disco.ToHex()));
        _paths.Tell(new ControlStateChanged(ControlState.Running, null, "test"));
        _store.Apply(new NetMap
        {
            Version = 1,
            Self = new Node { Id = "self", Addresses = { "100.64.0.1" } },
            Peers =
            {
                new Node
                {
                    Id = "dev-b", Name = "b", Addresses = { "100.64.0.2" }, Endpoints = { "127.0.0.1:1001" },
                    NodeKey = ByteString.CopyFrom(Convert.FromHexString(_peerKey.PublicKey.ToHex())),
                    DiscoKey = ByteString.CopyFrom(Convert.FromHexString(_peerDisco.PublicKey.ToHex())),
                },
            },
        });
        _paths.Tell(new NetMapChanged(_store.View, NetMapApplied.Replaced));
    }

    private void PatchEndpoint(string endpoint)
    {
        _store.Apply(new NetMapDelta
        {
            BaseVersion = _store.Version, Version = _store.Version + 1,
            Patches = { new PeerPatch { Id = "dev-b", Endpoints = new EndpointList { Endpoints = { endpoint } } } },
        });
        Assert.True(_store.LastTouch.PeersOnly);
        _paths.Tell(new NetMapChanged(_store.View, NetMapApplied.Patched) { Touch = _store.LastTouch });
    }

    private async Task<string?> PathEndpoint()
    {
        var reply = await _paths.Ask<PathStatusReply>(GetPathStatus.Instance, Timeout);
        return reply.Paths.SingleOrDefault(p => p.NodeKeyHex == _peerKey.PublicKey.ToHex())?.Endpoint;
    }

    private async Task AwaitPathEndpoint(string expected)
    {
        var deadline = DateTime.UtcNow + Timeout;
        string? seen;
        while ((seen = await PathEndpoint()) != expected)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the path to b is {seen ?? "absent"}, not {expected}");
            await Task.Delay(50);
        }
    }

    private Task<IActorRef> Finder(int incarnation) =>
        Sys.ActorSelection(_paths.Path / $"path-dev-b.{incarnation}").ResolveOne(Timeout);

    [Fact]
    public async Task A_change_of_one_peers_endpoints_reaches_its_finder_through_the_incremental_path()
    {
        await AwaitPathEndpoint("127.0.0.1:1001");
        PatchEndpoint("127.0.0.1:1002");
        await AwaitPathEndpoint("127.0.0.1:1002");
    }

    [Fact]
    public async Task A_finder_that_fails_is_given_the_peer_as_the_netmap_has_it_now()
    {
        await AwaitPathEndpoint("127.0.0.1:1001");
        PatchEndpoint("127.0.0.1:1002");
        await AwaitPathEndpoint("127.0.0.1:1002");
        var finder = await Finder(1);

        // A failure inside the finder: it restarts from the peer it was made with (endpoint 1001).
        EventFilter.Exception<NullReferenceException>().ExpectOne(() => finder.Tell(new PeerChanged(null!)));
        await Task.Delay(1000); // past the restart and the restarted finder's first heartbeat
        await AwaitPathEndpoint("127.0.0.1:1002");
        Assert.Equal(finder, await Finder(1)); // the same finder, restarted, not a new one
    }

    [Fact]
    public async Task A_finder_that_stops_is_started_again_for_a_peer_still_in_the_netmap()
    {
        await AwaitPathEndpoint("127.0.0.1:1001");
        PatchEndpoint("127.0.0.1:1003");
        var first = await Finder(1);
        Watch(first);
        first.Tell(Kill.Instance); // stops it: the default supervision stops an actor that is killed
        ExpectTerminated(first, Timeout);

        IActorRef? second = null;
        await AwaitAssertAsync(async () => second = await Finder(2), Timeout);
        Assert.NotEqual(first, second);
        await AwaitPathEndpoint("127.0.0.1:1003");
    }

    /// <summary>
    /// Netcheck is the PathManager's child: killed, it is started again a second later, and the new one
    /// re-learns what the first knew. The relay map and home region come from the PathManager
    /// (<see cref="NetcheckStarted"/>), the machine's own addresses from its start, so its first report
    /// answers from the STUN server and carries the local endpoint, as before the kill.
    /// </summary>
    [Fact]
    public async Task Netcheck_killed_is_started_again_and_reports_the_relay_map_home_and_local_endpoints_it_had()
    {
        await using var stun = new LoopbackStunServer();
        var map = new RelayMap
        {
            Regions = { new RelayRegion { Id = 5, Code = "here", Nodes = { new RelayNode { Host = "127.0.0.1", Port = 1, StunPort = stun.Port } } } },
        };
        _paths.Tell(new RelayAccessChanged(map, [1, 2, 3], DateTimeOffset.UtcNow.AddHours(1), "127.0.0.1"));

        async Task<NetcheckReport> AnsweredReport()
        {
            NetcheckReport? report = null;
            await AwaitAssertAsync(async () =>
            {
                report = await _paths.Ask<NetcheckReport>(GetNetcheck.Instance, Timeout);
                Assert.True(report.Udp, "no STUN answer in the report");
            }, TimeSpan.FromSeconds(15), TimeSpan.FromMilliseconds(200));
            return report!;
        }

        var before = await AnsweredReport();
        Assert.Equal(5, before.HomeRegion);
        Assert.Equal(["127.0.0.1:41641"], before.LocalEndpoints);

        var first = await Sys.ActorSelection(_paths.Path / "netcheck").ResolveOne(Timeout);
        Watch(first);
        first.Tell(Kill.Instance);
        ExpectTerminated(first, Timeout);
        IActorRef? second = null;
        await AwaitAssertAsync(async () => second = await Sys.ActorSelection(_paths.Path / "netcheck").ResolveOne(Timeout), Timeout);
        Assert.NotEqual(first, second);

        // A discovery without the relay map would answer at once with no STUN result: this one probes.
        var after = await AnsweredReport();
        Assert.Equal(5, after.HomeRegion);
        Assert.Equal(["127.0.0.1:41641"], after.LocalEndpoints);
        Assert.Equal(before.StunAddresses, after.StunAddresses);
    }

    /// <summary>
    /// The agent moved to another coordinator of its cluster (a failover, a rolling upgrade): the new one sends
    /// the same relay map from another host. Relay nodes that name their hosts do not depend on it, so the
    /// relay client carries on; only a node that names none (the coordinator's embedded relay) is at another
    /// address now, and its client starts over there.
    /// </summary>
    [Fact]
    public async Task Another_coordinator_sending_the_same_relay_map_keeps_the_relay_connections_unless_a_node_is_reached_at_the_coordinators_host()
    {
        await using var stun = new LoopbackStunServer();
        RelayMap MapWithHost(string host) => new()
        {
            Regions = { new RelayRegion { Id = 5, Code = "here", Nodes = { new RelayNode { Host = host, Port = 1, StunPort = stun.Port } } } },
        };
        var expiry = DateTimeOffset.UtcNow.AddHours(1);
        using var nodeKey = Curve25519PrivateKey.Generate();
        using var issuer = RelayTicket.SigningKey(RelayTicket.NewSigningSeed());
        var ticket = new RelayTicket(nodeKey.PublicKey, "tn_paths", expiry).Sign(issuer);
        _paths.Tell(new NodeKeyChanged(nodeKey.ToHex(), Rotated: false));
        _paths.Tell(new RelayAccessChanged(MapWithHost("127.0.0.1"), ticket, expiry, "127.0.0.1"));
        var first = await RelayClientNamed("relay-5.1");

        _paths.Tell(new RelayAccessChanged(MapWithHost("127.0.0.1"), ticket, expiry, "localhost"));
        _paths.Tell(new RelayAccessChanged(MapWithHost("127.0.0.1"), ticket, expiry, "127.0.0.1"));
        await _paths.Ask<NetcheckReport>(GetNetcheck.Instance, Timeout); // both taken (one mailbox)
        await Assert.ThrowsAsync<ActorNotFoundException>(() => Sys.ActorSelection(_paths.Path / "relay-5.2").ResolveOne(Timeout));
        Assert.Equal(first, await RelayClientNamed("relay-5.1"));

        _paths.Tell(new RelayAccessChanged(MapWithHost(""), ticket, expiry, "127.0.0.1"));
        await RelayClientNamed("relay-5.2");
        _paths.Tell(new RelayAccessChanged(MapWithHost(""), ticket, expiry, "localhost"));
        await RelayClientNamed("relay-5.3");
    }

    [Fact]
    public async Task Logged_out_and_in_again_under_a_new_node_key_the_home_relay_opens_when_the_ticket_for_that_key_comes()
    {
        // Logging out makes a new node key. Going up again opened no relay while the ticket still named the old key,
        // and the new ticket came with the same map: nothing opened the home region's relay until the next netcheck
        // (20-26 s), and peers behind hard NATs could not reach this device meanwhile.
        await using var stun = new LoopbackStunServer();
        var map = new RelayMap { Regions = { new RelayRegion { Id = 5, Code = "here", Nodes = { new RelayNode { Host = "127.0.0.1", Port = 1, StunPort = stun.Port } } } } };
        var expiry = DateTimeOffset.UtcNow.AddHours(1);
        using var issuer = RelayTicket.SigningKey(RelayTicket.NewSigningSeed());
        using var before = Curve25519PrivateKey.Generate();
        _paths.Tell(new NodeKeyChanged(before.ToHex(), Rotated: false));
        _paths.Tell(new RelayAccessChanged(map, new RelayTicket(before.PublicKey, "tn_paths", expiry).Sign(issuer), expiry, "127.0.0.1"));
        await RelayClientNamed("relay-5.1");

        _paths.Tell(new ControlStateChanged(ControlState.NeedsLogin, null, "test"));
        using var after = Curve25519PrivateKey.Generate();
        _paths.Tell(new NodeKeyChanged(after.ToHex(), Rotated: false));
        _paths.Tell(new ControlStateChanged(ControlState.Connecting, null, "test"));
        await _paths.Ask<NetcheckReport>(GetNetcheck.Instance, Timeout); // all taken (one mailbox)
        await Assert.ThrowsAsync<ActorNotFoundException>(() => Sys.ActorSelection(_paths.Path / "relay-5.2").ResolveOne(TimeSpan.FromMilliseconds(300)));

        _paths.Tell(new RelayAccessChanged(map, new RelayTicket(after.PublicKey, "tn_paths", expiry).Sign(issuer), expiry, "127.0.0.1"));
        // Well before the next netcheck (20-26 s) could open it.
        await AwaitAssertAsync(async () => await Sys.ActorSelection(_paths.Path / "relay-5.2").ResolveOne(TimeSpan.FromMilliseconds(300)),
            TimeSpan.FromSeconds(3), TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public async Task A_finder_that_went_idle_before_the_engine_made_its_peer_takes_that_peer_when_it_comes_and_its_traffic_wakes_it()
    {
        // The tunnels apply the netmap on their own, and may lag (a busy data plane): the finder's heartbeat found no
        // engine peer, counted that as idle and stopped. Nothing looked again, so the peer, made later, was never
        // bound: no path chosen for it, and its packets could not wake the finder (no probing, no call-me-maybe).
        // Bound while idle, it is marked so, and its first packet wakes the finder.
        await AwaitPathEndpoint("127.0.0.1:1001");
        await Task.Delay(PathFinder.HeartbeatInterval * 2); // the second heartbeat finds no peer: idle
        Assert.False(_node.Device.Peers.ContainsKey(_peerKey.PublicKey));

        _node.TrustKey(_peerKey.PublicKey, new Weft.NodeAgent.WireGuard.Endpoint(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 9)), "100.64.0.2/32");
        var peer = _node.Device.Peers[_peerKey.PublicKey];
        await AwaitAssertAsync(() =>
        {
            Assert.True(peer.PathManaged, "the finder never bound the engine's peer");
            Assert.Equal("127.0.0.1:1001", peer.Endpoint?.ToString());
        }, TimeSpan.FromSeconds(15), TimeSpan.FromMilliseconds(100));
        Assert.Equal(typeof(PathFinder), peer.PathSignals.GetType().DeclaringType); // its packets reach the finder now
    }

    private async Task<IActorRef> RelayClientNamed(string name)
    {
        IActorRef? found = null;
        await AwaitAssertAsync(async () => found = await Sys.ActorSelection(_paths.Path / name).ResolveOne(Timeout), TimeSpan.FromSeconds(15), TimeSpan.FromMilliseconds(100));
        return found!;
    }

    public new void Dispose()
    {
        _node.Dispose();
        _peerKey.Dispose();
        _peerDisco.Dispose();
        _disco.Dispose();
        base.Dispose();
    }
}
