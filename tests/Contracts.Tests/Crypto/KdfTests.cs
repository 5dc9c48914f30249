using System.Text;
using Weft.Contracts.Crypto;

namespace Weft.Contracts.Tests.Crypto;

public class KdfTests
{
    /// <summary>wireguard-go device/kdf_test.go: KDF3 known answers (τ1, τ2, τ3).</summary>
    [Theory]
    [InlineData("746573742d6b6579", "746573742d696e707574",
        "6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633",
        "df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a",
        "fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24")]
    [InlineData("776972656775617264", "776972656775617264",
        "491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8",
        "1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f",
        "31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160")]
    [InlineData("", "",
        "8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0",
        "58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e",
        "0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e")]
    public void WireGuard_go_kdf_vectors(string key, string input, string t1, string t2, string t3)
    {
        var k = Convert.FromHexString(key);
        var i = Convert.FromHexString(input);
        byte[] a = new byte[32], b = new byte[32], c = new byte[32];

        Kdf.Derive(k, i, a, b, c);
        Assert.Equal([t1, t2, t3], new[] { a, b, c }.Select(Convert.ToHexStringLower));

        // KDF2 and KDF1 are prefixes of KDF3.
        byte[] a2 = new byte[32], b2 = new byte[32], a1 = new byte[32];
        Kdf.Derive(k, i, a2, b2);
        Kdf.Derive(k, i, a1);
        Assert.Equal(t1, Convert.ToHexStringLower(a2));
        Assert.Equal(t2, Convert.ToHexStringLower(b2));
        Assert.Equal(t1, Convert.ToHexStringLower(a1));
    }

    [Fact]
    public void Outputs_may_overwrite_the_chaining_key()
    {
        var chainingKey = Encoding.ASCII.GetBytes("0123456789abcdef0123456789abcdef");
        byte[] expected1 = new byte[32], expected2 = new byte[32];
        Kdf.Derive(chainingKey.ToArray(), "input"u8, expected1, expected2);

        var aliased = chainingKey.ToArray();
        var second = new byte[32];
        Kdf.Derive(aliased, "input"u8, aliased, second);

        Assert.Equal(expected1, aliased);
        Assert.Equal(expected2, second);
    }

    [Fact]
    public void Hmac_with_a_key_longer_than_a_block_hashes_the_key_first()
    {
        var longKey = Enumerable.Range(0, 100).Select(i => (byte)i).ToArray();
        var hashedKey = new byte[32];
        Blake2s.Hash(longKey, hashedKey);
        byte[] viaLong = new byte[32], viaHashed = new byte[32];

        HmacBlake2s.Compute(longKey, "message"u8, viaLong);
        HmacBlake2s.Compute(hashedKey, "message"u8, viaHashed);

        Assert.Equal(viaHashed, viaLong);
    }
}
