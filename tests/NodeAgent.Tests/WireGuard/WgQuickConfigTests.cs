using Weft.Contracts.Keys;
using Weft.NodeAgent.Standalone;

namespace Weft.NodeAgent.Tests.WireGuard;

public class WgQuickConfigTests
{
    private static readonly string PrivateKey = Curve25519PrivateKey.Generate().ToBase64();
    private static readonly string PeerKey = Curve25519PrivateKey.Generate().PublicKey.ToBase64();

    [Fact]
    public void A_complete_file_parses()
    {
        var config = WgQuickConfig.Parse($"""
            # a comment
            [Interface]
            PrivateKey = {PrivateKey}
            ListenPort = 51820
            Address = 100.64.0.1/10, fd7a:115c:a1e0::1/48
            MTU = 1380

            [Peer]
            PublicKey = {PeerKey}   # trailing comment
            PresharedKey = {Convert.ToBase64String(new byte[32])}
            Endpoint = 198.18.0.2:51821
            AllowedIPs = 100.64.0.2/32, fd7a:115c:a1e0::2/128
            PersistentKeepalive = 25
            """);

        Assert.Equal(51820, config.ListenPort);
        Assert.Equal(1380, config.Mtu);
        Assert.Equal(["100.64.0.1/10", "fd7a:115c:a1e0::1/48"], config.Addresses.Select(a => a.ToString()));
        var peer = Assert.Single(config.Peers);
        Assert.Equal(PeerKey, peer.PublicKey.ToBase64());
        Assert.Equal("198.18.0.2:51821", peer.Endpoint!.ToString());
        Assert.Equal(["100.64.0.2/32", "fd7a:115c:a1e0::2/128"], peer.AddAllowedIps.Select(p => p.ToString()));
        Assert.Equal(25, peer.PersistentKeepaliveSeconds);
    }

    [Theory]
    [InlineData("[Interface]\nPrivateKey = nope\n", 2, "PrivateKey")]
    [InlineData("[Interface]\nPrivateKey = KEY\nListenPort = 70000\n", 3, "ListenPort")]
    [InlineData("[Interface]\nPrivateKey = KEY\nAddress = 100.64.0.1/40\n", 3, "Address")]
    [InlineData("[Interface]\nPrivateKey = KEY\nColour = blue\n", 3, "unknown key 'Colour'")]
    [InlineData("[Interface]\nPrivateKey = KEY\nPostUp = iptables -A ...\n", 3, "does not support")]
    [InlineData("[Interface]\nPrivateKey = KEY\n[Peer]\nPublicKey = PEER\nAllowedIPs = 100.64.0.0/99\n", 5, "AllowedIPs")]
    [InlineData("[Interface]\nPrivateKey = KEY\n[Peer]\nPublicKey = PEER\nEndpoint = 198.18.0.2\n", 5, "Endpoint")]
    [InlineData("[Interface]\nPrivateKey = KEY\n[Peer]\nPublicKey = PEER\nPersistentKeepalive = often\n", 5, "PersistentKeepalive")]
    [InlineData("[Interface]\nPrivateKey = KEY\n[Peer]\nAllowedIPs = 100.64.0.2/32\n", 3, "no PublicKey")]
    [InlineData("[Interface]\nPrivateKey = KEY\n[Peers]\n", 3, "unknown section")]
    [InlineData("PrivateKey = KEY\n", 1, "outside of a section")]
    [InlineData("[Interface]\nPrivateKey = KEY\nListenPort 51820\n", 3, "Key = Value")]
    public void A_bad_line_is_an_error_naming_it(string text, int line, string reason)
    {
        var error = Assert.Throws<ConfigException>(() => WgQuickConfig.Parse(text.Replace("KEY", PrivateKey).Replace("PEER", PeerKey), "wg0.conf"));

        Assert.StartsWith($"wg0.conf:{line}:", error.Message);
        Assert.Contains(reason, error.Message);
    }

    [Fact]
    public void A_file_without_a_private_key_is_an_error()
    {
        Assert.Contains("no PrivateKey", Assert.Throws<ConfigException>(() => WgQuickConfig.Parse("[Interface]\nListenPort = 1\n")).Message);
        Assert.Contains("no [Interface]", Assert.Throws<ConfigException>(() => WgQuickConfig.Parse("# empty\n")).Message);
    }

    public static TheoryData<string> HostsThatAreNoNames =>
    [
        // 300 characters: the fuzzer found that it crashed the parser inside the system resolver.
        string.Join(".", Enumerable.Repeat(new string('a', 59), 5)),
        "bad_name",
        "-leading-hyphen.example",
        "[not-an-address]",
    ];

    [Theory]
    [MemberData(nameof(HostsThatAreNoNames))]
    public void An_endpoint_host_that_is_no_dns_name_is_refused_without_asking_a_resolver(string host)
    {
        var asked = new List<string>();
        var text = $"[Interface]\nPrivateKey = {PrivateKey}\n[Peer]\nPublicKey = {PeerKey}\nEndpoint = {host}:51820\n";

        var error = Assert.Throws<ConfigException>(() => WgQuickConfig.Parse(text, "wg0.conf", name => { asked.Add(name); return []; }));

        Assert.Contains("Endpoint", error.Message);
        Assert.Empty(asked);
    }

    [Fact]
    public void An_endpoint_host_name_is_resolved_with_the_given_resolver()
    {
        var text = $"[Interface]\nPrivateKey = {PrivateKey}\n[Peer]\nPublicKey = {PeerKey}\nEndpoint = peer.example:51820\n";

        var config = WgQuickConfig.Parse(text, "wg0.conf", name => name == "peer.example" ? [System.Net.IPAddress.Parse("198.18.0.9")] : []);

        Assert.Equal("198.18.0.9:51820", config.Peers.Single().Endpoint!.ToString());
    }
}
