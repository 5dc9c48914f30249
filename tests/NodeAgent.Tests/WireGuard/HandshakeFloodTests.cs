using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

/// <summary>
/// A third party floods an engine with handshake initiations that carry a valid mac1 (anyone who
/// knows the public key can make them). The receive thread only queues them, so the established
/// tunnel between two real peers keeps carrying traffic, and the handshake thread answers the flood
/// with cookie replies (mac2 required) rather than Noise work.
/// </summary>
public sealed class HandshakeFloodTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private readonly EngineNode _a;
    private readonly EngineNode _b;

    public HandshakeFloodTests()
    {
        _a = new EngineNode(Sys, "a");
        _b = new EngineNode(Sys, "b");
        _a.Trust(_b, "100.64.0.2/32");
        _b.Trust(_a, "100.64.0.1/32");
    }

    [Fact]
    public void An_established_tunnel_keeps_carrying_traffic_through_a_flood_of_valid_mac1_initiations()
    {
        var first = TestPackets.Ipv4("100.64.0.1", "100.64.0.2");
        _a.Tun.Inject(first);
        Assert.Equal(first, _b.Receive());

        // Initiations from strangers, each with a valid mac1 for B's key, as fast as the socket sends.
        using (var flood = new StrangerInitiations(_b, distinct: 64))
        {
            // Wait until the flood has made B "under load" before measuring.
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (_b.Device.Counters[DropReason.CookieRequired] == 0)
            {
                Assert.True(DateTime.UtcNow < deadline, $"the flood ({flood.Sent} initiations) never put the engine under load");
                Thread.Sleep(10);
            }

            const int Probes = 40;
            var delivered = 0;
            for (var i = 0; i < Probes; i++)
            {
                var probe = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", payloadLength: 64, fill: (byte)i);
                _a.Tun.Inject(probe);
                while (_b.TryReceive(TimeSpan.FromSeconds(2), out var packet))
                {
                    if (!packet.SequenceEqual(probe)) continue; // a late copy of an earlier probe
                    delivered++;
                    break;
                }
            }
            flood.Stop();

            var counters = _b.Device.Counters;
            var answeredWithCookies = counters[DropReason.CookieRequired];
            var summary = $"{delivered}/{Probes} probes delivered while {flood.Sent} initiations were sent; cookie replies {answeredWithCookies}, " +
                          $"queue full {counters[DropReason.HandshakeQueueFull]}, rate limited {counters[DropReason.RateLimited]}";
            Console.WriteLine(summary);
            // Before the handshake checks left the receive thread, 97–100% of such probes were lost.
            Assert.True(delivered * 2 > Probes, summary);
            Assert.True(answeredWithCookies > 0, summary);
        }
    }

    public new void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
        base.Dispose();
    }
}
