using System.Net;
using Weft.Contracts.Control;

namespace Weft.Contracts.Tests.Control;

/// <summary>Addresses and prefixes read as Go's net/netip reads them: no inet_aton shorthand, no host bits, no zones.</summary>
public class IpLiteralTests
{
    [Theory]
    [InlineData("100.64.0.1")]
    [InlineData("0.0.0.0")]
    [InlineData("255.255.255.255")]
    [InlineData("fd7a:115c:a1e0::1")]
    [InlineData("::")]
    [InlineData("::ffff:198.18.0.1")]
    public void Canonical_addresses_are_read(string text)
    {
        Assert.True(IpLiteral.TryParseAddress(text, out var address));
        Assert.Equal(IPAddress.Parse(text), address);
    }

    [Theory]
    [InlineData("100.64.1")]
    [InlineData("10.0")]
    [InlineData("10")]
    [InlineData("0x0a.0.0.1")]
    [InlineData("012.0.0.1")]
    [InlineData("1.2.3.4.5")]
    [InlineData("1.2.3.256")]
    [InlineData("1.2.3.")]
    [InlineData(" 1.2.3.4")]
    [InlineData("::ffff:1.2.3")]
    [InlineData("fe80::1%eth0")]
    [InlineData("[::1]")]
    [InlineData("")]
    [InlineData(null)]
    public void Shorthand_and_decorated_addresses_are_refused(string? text) => Assert.False(IpLiteral.TryParseAddress(text, out _));

    [Theory]
    [InlineData("198.18.40.0/24", true)]
    [InlineData("0.0.0.0/0", true)]
    [InlineData("::/0", true)]
    [InlineData("2001:db8::/32", true)]
    [InlineData("198.18.40.1/24", false)]  // host bits set
    [InlineData("198.18.40.0/024", false)] // leading zero
    [InlineData("198.18.40.0/33", false)]
    [InlineData("198.18.40.0/", false)]
    [InlineData("198.18.40/24", false)]
    [InlineData("2001:db8::/129", false)]
    [InlineData("198.18.40.0", false)]     // a bare address is not a prefix unless asked for
    public void Prefixes_name_their_network(string text, bool valid) => Assert.Equal(valid, IpLiteral.TryParsePrefix(text, out _));

    [Fact]
    public void A_bare_address_is_its_host_prefix_when_allowed()
    {
        Assert.True(IpLiteral.TryParsePrefix("100.64.0.1", out var v4, allowBareAddress: true));
        Assert.Equal(IPNetwork.Parse("100.64.0.1/32"), v4);
        Assert.True(IpLiteral.TryParsePrefix("fd7a:115c:a1e0::1", out var v6, allowBareAddress: true));
        Assert.Equal(128, v6.PrefixLength);
        Assert.False(IpLiteral.TryParsePrefix("100.64.1", out _, allowBareAddress: true));
    }
}
