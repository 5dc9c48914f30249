using System.Net;
using Weft.Contracts.Crypto;
using Weft.Contracts.Disco;
using Weft.Contracts.Keys;

namespace Weft.Contracts.Tests.Disco;

/// <summary>Disco packets: each message survives sealing and opening; the wrong key, tampering and malformed bodies give nothing.</summary>
public class DiscoPacketTests
{
    private static readonly byte[] TxId = Enumerable.Range(1, 12).Select(i => (byte)i).ToArray();

    [Fact]
    public void Ping_pong_and_call_me_maybe_read_back_as_sent()
    {
        using var a = Curve25519PrivateKey.Generate();
        using var b = Curve25519PrivateKey.Generate();
        using var node = Curve25519PrivateKey.Generate();
        using var ab = SealedBox.Between(a, b.PublicKey)!;
        using var ba = SealedBox.Between(b, a.PublicKey)!;

        var ping = DiscoPacket.Seal(new DiscoPing(TxId, node.PublicKey, Padding: 100), a.PublicKey, ab);
        Assert.True(DiscoPacket.TryReadSender(ping, out var sender));
        Assert.Equal(a.PublicKey, sender);
        var readPing = Assert.IsType<DiscoPing>(DiscoPacket.Open(ping, ba));
        Assert.Equal(TxId, readPing.TxId);
        Assert.Equal(node.PublicKey, readPing.NodeKey);
        Assert.Equal(100, readPing.Padding);
        Assert.Equal(DiscoPacket.Overhead + 12 + 32 + 100, ping.Length);

        var pong = Assert.IsType<DiscoPong>(DiscoPacket.Open(DiscoPacket.Seal(new DiscoPong(TxId, IPEndPoint.Parse("198.18.1.2:41641")), b.PublicKey, ba), ab));
        Assert.Equal(IPEndPoint.Parse("198.18.1.2:41641"), pong.Source);

        IPEndPoint[] endpoints = [IPEndPoint.Parse("198.18.1.2:41641"), IPEndPoint.Parse("[fd7a:115c:a1e0::1]:5")];
        var call = Assert.IsType<DiscoCallMeMaybe>(DiscoPacket.Open(DiscoPacket.Seal(new DiscoCallMeMaybe(endpoints), a.PublicKey, ab), ba));
        Assert.Equal(endpoints, call.Endpoints);
    }

    [Fact]
    public void A_packet_for_another_pair_or_altered_in_flight_does_not_open()
    {
        using var a = Curve25519PrivateKey.Generate();
        using var b = Curve25519PrivateKey.Generate();
        using var c = Curve25519PrivateKey.Generate();
        using var ab = SealedBox.Between(a, b.PublicKey)!;
        using var cb = SealedBox.Between(c, b.PublicKey)!;
        var packet = DiscoPacket.Seal(new DiscoPing(TxId, a.PublicKey), a.PublicKey, ab);
        Assert.Null(DiscoPacket.Open(packet, cb));
        packet[^5] ^= 0x10;
        using var ba = SealedBox.Between(b, a.PublicKey)!;
        Assert.Null(DiscoPacket.Open(packet, ba));
    }

    [Fact]
    public void Malformed_bodies_read_as_nothing_and_a_ragged_call_me_maybe_as_empty()
    {
        Assert.Null(DiscoPacket.Decode([]));
        Assert.Null(DiscoPacket.Decode([(byte)DiscoMessageType.Ping, 1, .. new byte[44]])); // unknown version
        Assert.Null(DiscoPacket.Decode([(byte)DiscoMessageType.Ping, 0, .. new byte[43]])); // short
        Assert.Null(DiscoPacket.Decode([0x7f, 0, 1, 2]));                                    // unknown type
        Assert.Null(DiscoPacket.Decode([(byte)DiscoMessageType.Pong, 0, .. new byte[30]]));  // unspecified source
        var ragged = Assert.IsType<DiscoCallMeMaybe>(DiscoPacket.Decode([(byte)DiscoMessageType.CallMeMaybe, 0, .. new byte[19]]));
        Assert.Empty(ragged.Endpoints);
        Assert.False(DiscoPacket.HasMagic(new byte[DiscoPacket.Overhead - 1]));
    }
}
