using System.Net;
using System.Net.Sockets;
using Weft.Contracts.Keys;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

/// <summary>
/// A device whose handshake queue backs up is "under load": handshakes without a valid mac2 get a
/// cookie reply instead of work, and a source that proves its address is still rate-limited.
/// </summary>
public sealed class UnderLoadTests : IDisposable
{
    private readonly Curve25519PrivateKey _responderKey = Curve25519PrivateKey.Generate();
    private readonly Curve25519PrivateKey _initiatorKey = Curve25519PrivateKey.Generate();
    private readonly WireGuardDevice _device;
    private readonly List<HandshakePacket> _queued = new();
    private readonly UdpClient _client = new(new IPEndPoint(IPAddress.Loopback, 0));
    private readonly Peer _toResponder;
    private readonly IndexTable _initiatorIndices = new();
    private readonly ManualClock _clock = new();

    public UnderLoadTests()
    {
        // The device's clock stands still, so the rate limiter's bucket cannot refill while the
        // burst is in flight, however slowly a loaded machine sends it.
        _device = new WireGuardDevice(new VirtualTun(), UdpTransport.Bind(0), _clock);
        _device.SetPrivateKey(_responderKey);
        // Handshakes are accepted but never processed: the backlog only grows.
        _device.HandshakeSink = packet => { lock (_queued) _queued.Add(packet); };
        _device.Start();
        _toResponder = new Peer(_responderKey.PublicKey, _initiatorIndices);
        _client.Client.ReceiveTimeout = 2000;
    }

    private byte[] Initiation()
    {
        var message = new byte[Messages.InitiationSize];
        Handshake.CreateInitiation(_initiatorKey, _toResponder, _initiatorIndices, EngineClock.System, message);
        return message;
    }

    private void Send(byte[] message) => _client.Send(message, new IPEndPoint(IPAddress.Loopback, _device.ListenPort));

    private void WaitFor(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            Thread.Sleep(10);
        }
    }

    [Fact]
    public void Under_load_a_handshake_without_mac2_gets_a_cookie_and_one_with_it_is_rate_limited_per_source()
    {
        for (var i = 0; i < Constants.UnderLoadQueueThreshold; i++) Send(Initiation());
        WaitFor(() => _device.HandshakeBacklog >= Constants.UnderLoadQueueThreshold);

        // Now under load: no mac2, so a cookie reply comes back instead of processing.
        Send(Initiation());
        var reply = _client.Receive(ref Any);
        Assert.Equal(Messages.TypeCookieReply, Messages.TypeOf(reply));
        Assert.True(_device.Counters[DropReason.CookieRequired] >= 1);

        // With the cookie, mac2 is valid: a burst of 5 passes the rate limit, the rest are dropped.
        Assert.True(_toResponder.Cookies.ConsumeReply(reply, EngineClock.System.NowMs));
        var before = _device.HandshakeBacklog;
        for (var i = 0; i < 20; i++) Send(Initiation());
        WaitFor(() => _device.Counters[DropReason.RateLimited] + (_device.HandshakeBacklog - before) >= 20);
        Assert.Equal(Constants.RateLimitBurst, _device.HandshakeBacklog - before);
        Assert.Equal(20 - Constants.RateLimitBurst, _device.Counters[DropReason.RateLimited]);
    }

    [Fact]
    public void Messages_a_stopped_handshake_actor_never_processed_leave_the_backlog_with_it_and_its_successor_is_not_held_under_load()
    {
        // The first sink never processes what it is handed: a TunnelSupervisor stopped with handshakes
        // in its mailbox (its parent, the DataPlane, restarted) loses them to dead letters.
        for (var i = 0; i < Constants.UnderLoadQueueThreshold; i++) Send(Initiation());
        WaitFor(() => _device.HandshakeBacklog >= Constants.UnderLoadQueueThreshold);
        List<HandshakePacket> lost;
        lock (_queued) lost = [.. _queued];

        // Its successor starts: the lost messages count no more.
        var handed = new List<HandshakePacket>();
        _device.HandshakeSink = packet =>
        {
            lock (handed) handed.Add(packet);
            _device.HandshakeProcessed(packet);
        };
        Assert.Equal(0, _device.HandshakeBacklog);

        // A message of the old sink processed late (an actor restarted in place keeps its mailbox)
        // does not take the new sink's count below zero.
        _device.HandshakeProcessed(lost[0]);
        Assert.Equal(0, _device.HandshakeBacklog);

        // Once the under-load second is over, an initiation without a cookie is taken as work again,
        // not answered with a cookie reply.
        _clock.Advance(Constants.UnderLoadAfterTime + TimeSpan.FromMilliseconds(1));
        var cookiesBefore = _device.Counters[DropReason.CookieRequired];
        Send(Initiation());
        WaitFor(() => { lock (handed) return handed.Count == 1; });
        Assert.Equal(cookiesBefore, _device.Counters[DropReason.CookieRequired]);
        Assert.Equal(0, _device.HandshakeBacklog);
    }

    private static IPEndPoint? Any;

    public void Dispose()
    {
        _client.Dispose();
        _device.Dispose();
    }
}
