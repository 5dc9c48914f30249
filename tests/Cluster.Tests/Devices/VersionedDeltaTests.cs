using Google.Protobuf;
using Weft.Cluster.Devices;
using Weft.Contracts.Control;

namespace Weft.Cluster.Tests.Devices;

/// <summary>The device stream numbers a tailnet's delta without parsing it: what the agent parses is the same delta, with its versions.</summary>
public sealed class VersionedDeltaTests
{
    private static NetMapDelta Sample()
    {
        var delta = new NetMapDelta();
        delta.Patches.Add(new PeerPatch { Id = "dv_a", Endpoints = new EndpointList { Endpoints = { "198.18.0.1:41641" } }, HomeRelay = 1 });
        delta.PeersRemoved.Add("dv_b");
        delta.PeersChanged.Add(new Node { Id = "dv_c", Name = "gamma", Endpoints = { "198.18.0.3:41641" } });
        delta.Filter = new PacketFilter();
        return delta;
    }

    [Theory]
    [InlineData(0UL, 1UL)]
    [InlineData(127UL, 128UL)]
    [InlineData((7UL << 32) | 41, (7UL << 32) | 42)]
    [InlineData(ulong.MaxValue - 1, ulong.MaxValue)]
    public void The_wrapped_delta_parses_as_the_same_delta_with_its_versions(ulong baseVersion, ulong version)
    {
        var delta = Sample();
        var message = ServerMessage.Parser.ParseFrom(VersionedDelta.Wrap(delta.ToByteArray(), baseVersion, version));

        Assert.Equal(ServerMessage.BodyOneofCase.Delta, message.BodyCase);
        var expected = delta.Clone();
        expected.BaseVersion = baseVersion;
        expected.Version = version;
        Assert.Equal(expected, message.Delta);
        // Byte for byte what serialising it would give, once parsed and written again: nothing extra rides along.
        Assert.Equal(new ServerMessage { Delta = expected }.ToByteArray(), message.ToByteArray());
    }

    [Theory]
    [InlineData(new byte[] { 0xff, 0xff, 0xff })] // a tag that never ends
    [InlineData(new byte[] { 0x32, 0x0a, 0x01, 0x02 })] // patches: 10 bytes announced, 2 present
    [InlineData(new byte[] { 0x08 })] // version: a tag without its value
    [InlineData(new byte[] { 0x04 })] // an end-group tag with no group
    public void A_malformed_delta_is_refused_and_never_wrapped(byte[] garbage)
    {
        Assert.Throws<InvalidProtocolBufferException>(() => VersionedDelta.Wrap(garbage, 1, 2));
    }

    [Fact]
    public void An_empty_delta_still_carries_its_versions()
    {
        var message = ServerMessage.Parser.ParseFrom(VersionedDelta.Wrap([], 5, 6));
        Assert.Equal(5UL, message.Delta.BaseVersion);
        Assert.Equal(6UL, message.Delta.Version);
        Assert.Empty(message.Delta.Patches);
    }
}
