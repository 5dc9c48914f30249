using System.Security.Cryptography;
using Akka.Actor;
using Google.Protobuf;
using Weft.Contracts.Control;
using Weft.Contracts.Crypto;
using Weft.Contracts.Disco;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Paths;
using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.Tunnels;
using Weft.NodeAgent.WireGuard;
using Weft.Relay;

namespace Weft.NodeAgent.Tests.Paths;

/// <summary>
/// A peer that rotates its node key is reachable on the relay under the new key only once its agent has
/// a ticket for it and has dialled again; until then only its old connection takes packets (its agent
/// keeps it open for 10 s after the new one is up). The netmap can name the new key first, so a finder
/// keeps addressing the old key until the peer is heard through the relay under the new one, or 5 s pass.
/// </summary>
public sealed class RotatedPeerOnRelayTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task A_peer_that_rotated_is_addressed_under_its_old_key_until_it_speaks_under_the_new_one_or_the_grace_runs_out()
    {
        await using var relay = new LoopbackRelay("tn_rotation");

        // This agent: an engine and its PathManager, home on region 1.
        using var node = new EngineNode(Sys, "engine");
        using var disco = Curve25519PrivateKey.Generate();
        var control = CreateTestProbe();
        var paths = Sys.ActorOf(PathManager.PropsFor(node.Device, control.Ref, new LocalAddressSource(null, ["127.0.0.1:41641"], false, TimeSpan.FromMinutes(5))), "paths");
        control.ExpectMsg<WatchControl>(Timeout);
        paths.Tell(new DiscoKeyChanged(disco.ToHex()));
        paths.Tell(new NodeKeyChanged(node.Key.ToHex(), Rotated: false));
        var region = new RelayRegion { Id = 1, Code = "lab", Nodes = { new RelayNode { Host = "127.0.0.1", Port = relay.Port } } };
        paths.Tell(new RelayAccessChanged(new RelayMap { Regions = { region } }, relay.Ticket(node.Key.PublicKey), DateTimeOffset.UtcNow.AddHours(1), "127.0.0.1"));
        paths.Tell(new ControlStateChanged(ControlState.Running, null, "test"));

        // The peer, home on region 1 too, with no direct endpoint: the relay is its only path.
        using var first = Curve25519PrivateKey.Generate();
        using var second = Curve25519PrivateKey.Generate();
        using var third = Curve25519PrivateKey.Generate();
        using var peerDisco = Curve25519PrivateKey.Generate();
        var store = new NetMapStore();
        store.Apply(new NetMap
        {
            Version = 1,
            Self = new Node { Id = "self", Addresses = { "100.64.0.1" }, HomeRelay = 1 },
            Peers =
            {
                new Node
                {
                    Id = "dev-b", Name = "b", Addresses = { "100.64.0.2" }, HomeRelay = 1,
                    NodeKey = ByteString.CopyFrom(first.PublicKey.ToArray()), DiscoKey = ByteString.CopyFrom(peerDisco.PublicKey.ToArray()),
                },
            },
        });
        // The engine's peer, as the TunnelSupervisor makes it from the netmap (a new key under the same id renames it).
        Task<MeshApplied> Mesh(Curve25519PublicKey key) => node.Supervisor.Ask<MeshApplied>(new ApplyMesh(
            [new MeshPeer("dev-b", key, [IpPrefix.Parse("100.64.0.2/32")], []) { Name = "b", Relay = Endpoint.ForRelay(1, key) }]) { PathManaged = true }, Timeout);
        Assert.Equal(1, (await Mesh(first.PublicKey)).Added);
        paths.Tell(new NetMapChanged(store.View, NetMapApplied.Replaced));
        await AwaitConditionAsync(() => Task.FromResult(relay.Server.ConnectionCountOf(node.Key.PublicKey) == 1), Timeout);
        await using var firstConnection = await relay.Connect(first);

        Curve25519PublicKey? AddressedTo(Curve25519PublicKey engineKey) =>
            node.Device.Peers.TryGetValue(engineKey, out var peer) && peer.Endpoint is { IsRelay: true } endpoint ? endpoint.RelayPeer : null;
        await AwaitConditionAsync(() => Task.FromResult(AddressedTo(first.PublicKey) == first.PublicKey), Timeout);

        // The peer rotates; the netmap says so before the peer's connection under the new key is up. The
        // engine renames its peer, and the finder takes the new netmap.
        async Task Rotate(Curve25519PrivateKey to)
        {
            Assert.Equal(1, (await Mesh(to.PublicKey)).Rekeyed);
            store.Apply(new NetMapDelta
            {
                BaseVersion = store.Version, Version = store.Version + 1,
                Patches = { new PeerPatch { Id = "dev-b", NodeKey = ByteString.CopyFrom(to.PublicKey.ToArray()) } },
            });
            paths.Tell(new NetMapChanged(store.View, NetMapApplied.Patched) { Touch = store.LastTouch });
            // The finder has taken it once it publishes the peer's path under the new key.
            await AwaitConditionAsync(async () => (await paths.Ask<PathStatusReply>(GetPathStatus.Instance, Timeout)).Paths.Any(p => p.NodeKeyHex == to.PublicKey.ToHex()), Timeout);
        }

        await Rotate(second);
        Assert.Equal(first.PublicKey, AddressedTo(second.PublicKey)); // still where the peer's connection is

        // The peer's connection under the new key is up, and it speaks (a disco ping): it is addressed there now,
        // and the answer reaches it there.
        await using var secondConnection = await relay.Connect(second);
        using var box = SealedBox.Between(peerDisco, disco.PublicKey)!;
        var ping = new DiscoPing(RandomNumberGenerator.GetBytes(DiscoPacket.TxIdSize), second.PublicKey);
        Assert.True(secondConnection.TrySend(node.Key.PublicKey, DiscoPacket.Seal(ping, peerDisco.PublicKey, box)));
        await AwaitConditionAsync(() => Task.FromResult(AddressedTo(second.PublicKey) == second.PublicKey), Timeout);
        // Among whatever else now goes there (the engine's handshake, sent again along the new path; call-me-maybe).
        DiscoPong? pong = null;
        using var reading = new CancellationTokenSource(Timeout);
        while (pong is null && await secondConnection.ReadAsync(reading.Token) is { } frame)
        {
            if (frame.Type != RelayFrameType.RecvPacket || !DiscoPacket.HasMagic(frame.Payload.AsSpan(RelayFrame.KeySize))) continue;
            if (DiscoPacket.Open(frame.Payload.AsSpan(RelayFrame.KeySize), box) is DiscoPong answer && answer.TxId.SequenceEqual(ping.TxId)) pong = answer;
        }
        Assert.NotNull(pong);

        // Another rotation, and the peer is never heard under the third key: after the grace it is addressed
        // there all the same (its old connection is about to close).
        await Rotate(third);
        Assert.Equal(second.PublicKey, AddressedTo(third.PublicKey));
        await AwaitConditionAsync(() => Task.FromResult(AddressedTo(third.PublicKey) == third.PublicKey), PathFinder.RotatedRelayKeyGrace + Timeout);
    }

    [Fact]
    public void The_engine_tells_the_finder_when_a_peer_whose_relay_path_names_another_key_is_heard_through_the_relay_under_its_own()
    {
        var clock = new ManualClock();
        using var a = new EngineNode(Sys, "a", clock, tick: false);
        using var b = new EngineNode(Sys, "b", clock, tick: false);
        a.Trust(b, "100.64.0.2/32");
        b.Trust(a, "100.64.0.1/32");
        a.Tun.Inject(TestPackets.Ipv4("100.64.0.1", "100.64.0.2"));
        b.Receive();
        AwaitCondition(() => b.PeerOf(a).Current is not null, Timeout);

        // A addresses B on the relay under the key B had before it rotated; B's packets come in under its own.
        using var before = Curve25519PrivateKey.Generate();
        var signals = new RecordingSignals();
        var peer = a.PeerOf(b);
        peer.PathManaged = true;
        peer.PathSignals = signals;
        peer.Endpoint = Endpoint.ForRelay(1, before.PublicKey);
        var relayed = new List<byte[]>();
        b.Device.Relays = new RelayCollector(relayed);
        b.PeerOf(a).Endpoint = Endpoint.ForRelay(1, a.Key.PublicKey);

        var packet = TestPackets.Ipv4("100.64.0.2", "100.64.0.1", fill: 0x33);
        Assert.True(b.Device.SendTransport(b.PeerOf(a), packet));
        a.Device.ReceiveRelayed(relayed.Single(), Endpoint.ForRelay(1, b.Key.PublicKey));
        Assert.Equal(packet, a.Receive());
        Assert.Equal([b.Key.PublicKey], signals.Heard);

        // Once the path names the key it is heard under, nothing more is said.
        peer.Endpoint = Endpoint.ForRelay(1, b.Key.PublicKey);
        Assert.True(b.Device.SendTransport(b.PeerOf(a), packet));
        a.Device.ReceiveRelayed(relayed[^1], Endpoint.ForRelay(1, b.Key.PublicKey));
        Assert.Equal(packet, a.Receive());
        Assert.Single(signals.Heard);
    }

    private sealed class RecordingSignals : IPathSignals
    {
        public List<Curve25519PublicKey> Heard { get; } = [];

        public void PathWanted(Peer peer) { }

        public void RelayedUnder(Peer peer, Curve25519PublicKey key) => Heard.Add(key);
    }

    private sealed class RelayCollector(List<byte[]> sent) : IRelayTransport
    {
        public bool Send(int region, Curve25519PublicKey destination, ReadOnlySpan<byte> packet)
        {
            sent.Add(packet.ToArray());
            return true;
        }
    }
}
