using System.Net;
using System.Net.Sockets;
using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

/// <summary>Garbage, truncated, forged and replayed packets are dropped and counted, and the live session carries on.</summary>
public sealed class BadInputTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private readonly EngineNode _a;
    private readonly EngineNode _b;
    private readonly UdpTap _tap;
    private readonly UdpClient _attacker = new(new IPEndPoint(IPAddress.Loopback, 0));

    public BadInputTests()
    {
        _a = new EngineNode(Sys, "a");
        _b = new EngineNode(Sys, "b");
        _tap = new UdpTap(_b.Endpoint); // A's packets to B pass through the tap, which records them
        _a.TrustKey(_b.Key.PublicKey, _tap.Endpoint, "100.64.0.2/32");
        _b.Trust(_a, "100.64.0.1/32");
        SessionWorks();
    }

    private void SessionWorks()
    {
        var packet = TestPackets.Ipv4("100.64.0.1", "100.64.0.2", fill: (byte)Random.Shared.Next(256));
        _a.Tun.Inject(packet);
        Assert.Equal(packet, _b.Receive());
        var back = TestPackets.Ipv4("100.64.0.2", "100.64.0.1", fill: (byte)Random.Shared.Next(256));
        _b.Tun.Inject(back);
        Assert.Equal(back, _a.Receive());
    }

    private void Send(byte[] datagram) => _attacker.Send(datagram, _b.Endpoint.Address);

    private void WaitFor(DropReason reason, long atLeast) =>
        AwaitCondition(() => _b.Device.Counters[reason] >= atLeast, TimeSpan.FromSeconds(5), $"{reason} >= {atLeast}");

    [Fact]
    public void Random_garbage_and_truncated_messages_are_dropped()
    {
        var random = new Random(7);
        for (var i = 0; i < 200; i++)
        {
            var garbage = new byte[random.Next(0, 200)];
            random.NextBytes(garbage);
            Send(garbage);
        }
        Send([4, 0, 0, 0, 1, 2, 3]);            // truncated transport header
        Send(new byte[147].Prepend((byte)1).ToArray()[..147]); // initiation one byte short
        Send([1, 0, 0, 0]);
        Send([3, 0, 0, 0, 9, 9]);                // truncated cookie reply

        WaitFor(DropReason.Malformed, 3);
        Assert.True(_b.Device.Counters.TotalDrops >= 200);
        SessionWorks();
    }

    [Fact]
    public void An_initiation_with_a_wrong_mac1_is_dropped_without_reply()
    {
        var initiation = _tap.Recorded.First(m => Messages.TypeOf(m) == Messages.TypeInitiation).ToArray();
        initiation[Messages.InitiationMac1] ^= 1;
        Send(initiation);

        WaitFor(DropReason.BadMac1, 1);
        _attacker.Client.ReceiveTimeout = 300;
        Assert.Throws<SocketException>(() => _attacker.Receive(ref Unsafe.Any));
        SessionWorks();
    }

    [Fact]
    public void A_replayed_initiation_is_refused_and_does_not_disturb_the_session()
    {
        var initiation = _tap.Recorded.First(m => Messages.TypeOf(m) == Messages.TypeInitiation);
        var before = _b.PeerOf(_a).Current;
        Send(initiation);
        Send(initiation);

        WaitFor(DropReason.HandshakeRejected, 2);
        Assert.Same(before, _b.PeerOf(_a).Current);
        Assert.Null(_b.PeerOf(_a).Next);
        SessionWorks();
    }

    [Fact]
    public void Replayed_data_is_dropped_once_seen()
    {
        var data = _tap.Recorded.Where(m => Messages.TypeOf(m) == Messages.TypeTransport && m.Length > Messages.KeepaliveSize).ToList();
        Assert.NotEmpty(data);
        var delivered = 0;
        foreach (var packet in data) Send(packet);

        WaitFor(DropReason.Replayed, data.Count);
        while (_b.Tun.Delivered.TryRead(out _)) delivered++;
        Assert.Equal(0, delivered);
        SessionWorks();
    }

    [Fact]
    public void A_transport_packet_with_a_flipped_bit_fails_authentication()
    {
        var data = _tap.Recorded.Last(m => Messages.TypeOf(m) == Messages.TypeTransport).ToArray();
        data[^1] ^= 0x80;
        Send(data);

        WaitFor(DropReason.BadAuthentication, 1);
        SessionWorks();
    }

    [Fact]
    public void A_transport_packet_for_an_unknown_index_is_dropped()
    {
        var data = _tap.Recorded.Last(m => Messages.TypeOf(m) == Messages.TypeTransport).ToArray();
        Messages.WriteIndex(data, Messages.TransportReceiver, 0xdeadbeef);
        Send(data);

        WaitFor(DropReason.UnknownIndex, 1);
        SessionWorks();
    }

    public new void Dispose()
    {
        _attacker.Dispose();
        _tap.Dispose();
        _a.Dispose();
        _b.Dispose();
        base.Dispose();
    }

    private static class Unsafe
    {
        public static IPEndPoint? Any = null;
    }
}
