using Akka.Actor;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.Paths;
using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.WireGuard;
using Weft.Relay;

namespace Weft.NodeAgent.Tests.Paths;

/// <summary>
/// A relay client of a region that is not the agent's home, on a real relay: it is closed when idle,
/// and a connection packets arrive on is not idle, though the agent sends nothing on it.
/// </summary>
public sealed class RelayUseTests : Akka.TestKit.Xunit2.TestKit
{
    [Fact]
    public async Task A_non_home_relay_connection_that_a_peer_keeps_sending_on_is_in_use_though_nothing_is_sent_back_on_it()
    {
        // The peer's netmap still names region 7 as this agent's home (its new home has not reached the peer:
        // no coordinator answers). Its packets arrive on region 7, and this agent answers through the peer's
        // own home, never through 7. Counting only what was sent, the client closed 7 as idle after a
        // minute, and the peer's packets went nowhere from then on.
        await using var relay = new LoopbackRelay("tn_relayuse");

        using var device = new WireGuardDevice(new VirtualTun("relay-use"), UdpTransport.Bind(0));
        using var nodeKey = Curve25519PrivateKey.Generate();
        var hub = new RelayHub(_ => { });
        var region = new RelayRegion { Id = 7, Code = "away", Nodes = { new RelayNode { Host = "127.0.0.1", Port = relay.Port } } };
        var paths = CreateTestProbe();
        paths.ChildActorOf(RelayClient.PropsFor(region, "127.0.0.1", hub, device, paths.Ref, new RelayCredentials(nodeKey.ToHex(), relay.Ticket(nodeKey.PublicKey)), home: false));
        await AwaitConditionAsync(() => Task.FromResult(relay.Server.ConnectionCountOf(nodeKey.PublicKey) == 1), TimeSpan.FromSeconds(10));
        Assert.Equal(long.MaxValue, hub.IdleMs(7)); // connected, and nothing sent or received yet

        using var peerKey = Curve25519PrivateKey.Generate();
        await using var peer = await relay.Connect(peerKey);
        for (var i = 0; i < 10; i++)
        {
            peer.TrySend(nodeKey.PublicKey, [4, 0, 0, 0, (byte)i]); // WireGuard-shaped: the engine drops it
            await Task.Delay(100);
        }
        Assert.InRange(hub.IdleMs(7), 0, 60_000); // under the idle limit: not closed at the next check
    }
}
