using Google.Protobuf;
using Weft.Cluster.Devices;
using Weft.Contracts.Control;

namespace Weft.Cluster.Tests.Devices;

/// <summary>The device stream numbers a tailnet's delta or full map without parsing it: what the agent parses is the same delta or map, with its versions.</summary>
public sealed class VersionStampTests
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
        var message = ServerMessage.Parser.ParseFrom(VersionStamp.Delta(delta.ToByteArray(), baseVersion, version));

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
        Assert.Throws<InvalidProtocolBufferException>(() => VersionStamp.Delta(garbage, 1, 2));
    }

    [Fact]
    public void An_empty_delta_still_carries_its_versions()
    {
        var message = ServerMessage.Parser.ParseFrom(VersionStamp.Delta([], 5, 6));
        Assert.Equal(5UL, message.Delta.BaseVersion);
        Assert.Equal(6UL, message.Delta.Version);
        Assert.Empty(message.Delta.Patches);
    }

    [Theory]
    [InlineData(1UL)]
    [InlineData((7UL << 32) | 42)]
    [InlineData(ulong.MaxValue)]
    public void The_stamped_full_map_parses_as_the_same_map_with_its_version_and_the_coordinators(ulong version)
    {
        var netmap = new NetMap { TailnetId = "tn_a", Self = new Node { Id = "dv_self", Name = "self" }, Dns = new DnsConfig { Suffix = "a.weft" }, Filter = new PacketFilter() };
        netmap.Peers.Add(new Node { Id = "dv_c", Name = "gamma", Endpoints = { "198.18.0.3:41641" } });
        netmap.Peers.Add(new Node { Id = "dv_d", Name = "delta" });
        string[] coordinators = ["http://127.0.0.1:7001/", "http://127.0.0.1:7002/"];

        var message = ServerMessage.Parser.ParseFrom(VersionStamp.FullMap(netmap.ToByteArray(), version, coordinators));

        Assert.Equal(ServerMessage.BodyOneofCase.Netmap, message.BodyCase);
        var expected = netmap.Clone();
        expected.Version = version;
        expected.Coordinators.AddRange(coordinators);
        Assert.Equal(expected, message.Netmap);
        Assert.Equal(new ServerMessage { Netmap = expected }.ToByteArray(), message.ToByteArray());
        Assert.Empty(ServerMessage.Parser.ParseFrom(VersionStamp.FullMap(netmap.ToByteArray(), version, [])).Netmap.Coordinators);
    }

    [Theory]
    [InlineData(new byte[] { 0xff, 0xff, 0xff })]
    [InlineData(new byte[] { 0x1a, 0x0a, 0x01 })] // peers: 10 bytes announced, 1 present
    public void A_malformed_full_map_is_refused_and_never_stamped(byte[] garbage)
    {
        Assert.Throws<InvalidProtocolBufferException>(() => VersionStamp.FullMap(garbage, 1, ["http://127.0.0.1:7001/"]));
    }
}
