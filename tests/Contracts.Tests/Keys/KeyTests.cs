using FsCheck.Xunit;
using Weft.Contracts.Keys;

namespace Weft.Contracts.Tests.Keys;

public class KeyTests
{
    [Fact]
    public void X25519_matches_rfc7748_section_6_1()
    {
        using var alice = Curve25519PrivateKey.FromBytes(Convert.FromHexString("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
        using var bob = Curve25519PrivateKey.FromBytes(Convert.FromHexString("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));

        Assert.Equal("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", alice.PublicKey.ToHex());
        Assert.Equal("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", bob.PublicKey.ToHex());
        var shared = new byte[32];
        Assert.True(alice.TryAgree(bob.PublicKey, shared));
        Assert.Equal("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", Convert.ToHexStringLower(shared));
    }

    [Fact]
    public void Agreement_with_a_low_order_point_is_refused()
    {
        using var key = Curve25519PrivateKey.Generate();
        Assert.False(key.TryAgree(default, new byte[32]));
    }

    [Fact]
    public void Private_keys_are_clamped_on_import()
    {
        var raw = Enumerable.Repeat((byte)0xff, 32).ToArray();
        using var key = Curve25519PrivateKey.FromBytes(raw);
        var exported = new byte[32];
        key.CopyTo(exported);

        Assert.Equal(0xf8, exported[0]);
        Assert.Equal(0x7f, exported[31]);
    }

    [Fact]
    public void Text_forms_round_trip()
    {
        using var key = Curve25519PrivateKey.Generate();
        var pub = key.PublicKey;

        Assert.Equal(pub, Curve25519PublicKey.ParseBase64(pub.ToBase64()));
        Assert.Equal(pub, Curve25519PublicKey.ParseHex(pub.ToHex()));
        Assert.Equal(44, pub.ToBase64().Length);
        Assert.Equal(new NodeKey(pub), NodeKey.Parse(new NodeKey(pub).ToString()));
        Assert.StartsWith("nodekey:", new NodeKey(pub).ToString());
        Assert.StartsWith("mkey:", new MachineKey(pub).ToString());
        Assert.StartsWith("discokey:", new DiscoKey(pub).ToString());
        Assert.True(Curve25519PrivateKey.TryParseBase64(key.ToBase64(), out var back));
        Assert.Equal(pub, back.PublicKey);
        Assert.DoesNotContain(key.ToBase64(), key.ToString());
    }

    [Theory]
    [InlineData("nodekey:00")]
    [InlineData("mkey:" + "0000000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("nodekey:zz00000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("")]
    public void Malformed_node_keys_do_not_parse(string text)
    {
        Assert.False(NodeKey.TryParse(text, out _));
    }

    [Theory]
    [InlineData("not base64")]
    [InlineData("AAAA")]
    [InlineData("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]
    public void Malformed_base64_keys_do_not_parse(string text)
    {
        Assert.False(Curve25519PublicKey.TryParseBase64(text, out _));
        Assert.False(Curve25519PrivateKey.TryParseBase64(text, out _));
    }

    [Property]
    public bool Public_key_equality_follows_the_bytes(byte[] a, byte[] b)
    {
        var x = new byte[32];
        var y = new byte[32];
        a.AsSpan(0, Math.Min(32, a.Length)).CopyTo(x);
        b.AsSpan(0, Math.Min(32, b.Length)).CopyTo(y);
        var kx = new Curve25519PublicKey(x);
        var ky = new Curve25519PublicKey(y);
        return (kx == ky) == x.AsSpan().SequenceEqual(y) && (kx == ky ? kx.GetHashCode() == ky.GetHashCode() : true);
    }

    [Property(MaxTest = 20)]
    public bool Diffie_hellman_agrees_from_both_sides()
    {
        using var a = Curve25519PrivateKey.Generate();
        using var b = Curve25519PrivateKey.Generate();
        byte[] ab = new byte[32], ba = new byte[32];
        return a.TryAgree(b.PublicKey, ab) && b.TryAgree(a.PublicKey, ba) && ab.AsSpan().SequenceEqual(ba);
    }
}
