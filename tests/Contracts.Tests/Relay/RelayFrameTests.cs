using Weft.Contracts.Crypto;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Contracts.Tests.Relay;

/// <summary>Relay framing: frames read back as written; oversized and truncated frames are refused with their reason; the login box opens only for its pair.</summary>
public class RelayFrameTests
{
    [Fact]
    public async Task Frames_read_back_in_order_with_their_type_and_payload()
    {
        using var key = Curve25519PrivateKey.Generate();
        var stream = new MemoryStream();
        stream.Write(RelayFrame.Build(RelayFrameType.SendPacket, key.PublicKey, [1, 2, 3]));
        stream.Write(RelayFrame.Build(RelayFrameType.KeepAlive, []));
        stream.Write(RelayFrame.BuildPeerGone(key.PublicKey, PeerGoneReason.NotHere));
        stream.Position = 0;
        var reader = new RelayFrameReader(stream);

        var first = await reader.ReadAsync(default);
        Assert.Equal(RelayFrameType.SendPacket, first!.Value.Type);
        Assert.Equal([.. key.PublicKey.ToArray(), 1, 2, 3], first.Value.Payload);
        Assert.Equal(RelayFrameType.KeepAlive, (await reader.ReadAsync(default))!.Value.Type);
        var gone = await reader.ReadAsync(default);
        Assert.Equal(RelayFrameType.PeerGone, gone!.Value.Type);
        Assert.Equal((byte)PeerGoneReason.NotHere, gone.Value.Payload[^1]);
        Assert.Null(await reader.ReadAsync(default));
    }

    [Theory]
    [InlineData(RelayFrameType.SendPacket, RelayFrame.KeySize + RelayFrame.MaxPacketSize + 1)]
    [InlineData(RelayFrameType.ClientInfo, RelayFrame.MaxLoginSize + 1)]
    [InlineData(RelayFrameType.KeepAlive, 1)]
    [InlineData(RelayFrameType.NotePreferred, 2)]
    [InlineData((RelayFrameType)0x7f, RelayFrame.MaxFrameSize + 1)]
    public async Task A_frame_larger_than_its_type_allows_is_refused_before_its_payload_is_read(RelayFrameType type, int length)
    {
        var header = new byte[RelayFrame.HeaderSize];
        RelayFrame.WriteHeader(header, type, length);
        var reader = new RelayFrameReader(new MemoryStream(header));
        var error = await Assert.ThrowsAsync<RelayProtocolException>(async () => await reader.ReadAsync(default));
        Assert.Equal("oversized_frame", error.Reason);
    }

    [Fact]
    public async Task A_stream_that_ends_inside_a_frame_is_a_truncated_frame()
    {
        var frame = RelayFrame.Build(RelayFrameType.Ping, new byte[8]);
        var reader = new RelayFrameReader(new MemoryStream(frame[..^3]));
        var error = await Assert.ThrowsAsync<RelayProtocolException>(async () => await reader.ReadAsync(default));
        Assert.Equal("truncated_frame", error.Reason);
    }

    [Fact]
    public void A_sealed_box_opens_for_its_pair_in_both_directions_and_for_no_one_else()
    {
        using var alice = Curve25519PrivateKey.Generate();
        using var bob = Curve25519PrivateKey.Generate();
        using var mallory = Curve25519PrivateKey.Generate();
        using var aliceToBob = SealedBox.Between(alice, bob.PublicKey)!;
        using var bobToAlice = SealedBox.Between(bob, alice.PublicKey)!;
        using var malloryToBob = SealedBox.Between(mallory, bob.PublicKey)!;

        var sealedMessage = aliceToBob.Seal("hello"u8);
        Assert.Equal("hello"u8.ToArray(), bobToAlice.Open(sealedMessage));
        Assert.Null(malloryToBob.Open(sealedMessage));
        sealedMessage[^1] ^= 1;
        Assert.Null(bobToAlice.Open(sealedMessage));
        Assert.Null(bobToAlice.Open(new byte[SealedBox.Overhead - 1]));
    }

    [Fact]
    public void A_malformed_login_body_is_a_bad_login()
    {
        Assert.Equal("bad_login", Assert.Throws<RelayProtocolException>(() => RelayLoginJson.Parse<ClientInfo>("{not json"u8)).Reason);
        Assert.Equal("bad_login", Assert.Throws<RelayProtocolException>(() => RelayLoginJson.Parse<ClientInfo>("null"u8)).Reason);
        var info = RelayLoginJson.Parse<ClientInfo>(RelayLoginJson.Serialize(new ClientInfo { Ticket = [1, 2], MeshKey = "ab" }));
        Assert.Equal([1, 2], info.Ticket);
        Assert.Equal("ab", info.MeshKey);
    }
}
