using System.Text;
using Weft.Contracts.Crypto;

namespace Weft.Contracts.Tests.Crypto;

public class Blake2sTests
{
    private static string Hex(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(bytes);

    private static byte[] Sequence(int length) => Enumerable.Range(0, length).Select(i => (byte)i).ToArray();

    [Fact]
    public void Rfc7693_appendix_B_abc()
    {
        var digest = new byte[32];
        Blake2s.Hash("abc"u8, digest);
        Assert.Equal("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982", Hex(digest));
    }

    /// <summary>
    /// RFC 7693 Appendix E: a grand hash over unkeyed and keyed digests of every output length
    /// {16, 20, 28, 32} and input length {0, 3, 64, 65, 255, 1024}. Covers the 16-byte keyed MAC.
    /// </summary>
    [Fact]
    public void Rfc7693_appendix_E_self_test()
    {
        static byte[] SelfTestSequence(int length, uint seed)
        {
            var output = new byte[length];
            uint a = 0xDEAD4BAD * seed, b = 1;
            for (var i = 0; i < length; i++)
            {
                var t = a + b;
                a = b;
                b = t;
                output[i] = (byte)(t >> 24);
            }
            return output;
        }

        var grand = new Blake2s(32);
        foreach (var outLength in new[] { 16, 20, 28, 32 })
        {
            foreach (var inLength in new[] { 0, 3, 64, 65, 255, 1024 })
            {
                var input = SelfTestSequence(inLength, (uint)inLength);
                var digest = new byte[outLength];
                var unkeyed = new Blake2s(outLength);
                unkeyed.Update(input);
                unkeyed.Finish(digest);
                grand.Update(digest);

                var key = SelfTestSequence(outLength, (uint)outLength);
                var keyed = new Blake2s(outLength, key);
                keyed.Update(input);
                keyed.Finish(digest);
                grand.Update(digest);
            }
        }
        var result = new byte[32];
        grand.Finish(result);

        Assert.Equal("6a411f08ce25adcdfb02aba641451cec53c598b24f4fc787fbdc88797f4c1dfe", Hex(result));
    }

    [Theory]
    [InlineData(0, "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9")]
    [InlineData(1, "e34d74dbaf4ff4c6abd871cc220451d2ea2648846c7757fbaac82fe51ad64bea")]
    [InlineData(2, "ddad9ab15dac4549ba42f49d262496bef6c0bae1dd342a8808f8ea267c6e210c")]
    public void Blake2_reference_unkeyed_answers(int length, string expected)
    {
        var digest = new byte[32];
        Blake2s.Hash(Sequence(length), digest);
        Assert.Equal(expected, Hex(digest));
    }

    [Theory]
    [InlineData(0, "48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49")]
    [InlineData(1, "40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1")]
    [InlineData(2, "6bb71300644cd3991b26ccd4d274acd1adeab8b1d7914546c1198bbe9fc9d803")]
    public void Blake2_reference_keyed_answers(int length, string expected)
    {
        var hash = new Blake2s(32, Sequence(32));
        hash.Update(Sequence(length));
        var digest = new byte[32];
        hash.Finish(digest);
        Assert.Equal(expected, Hex(digest));
    }

    [Fact]
    public void A_16_byte_mac_is_not_a_truncated_32_byte_one()
    {
        // protocols.md §1.1: key = HASH("mac1----" ‖ 0x42×32), message = 116 zero bytes.
        var key = new byte[32];
        Blake2s.Hash(Encoding.ASCII.GetBytes("mac1----"), Enumerable.Repeat((byte)0x42, 32).ToArray(), key);
        Assert.Equal("172c34d6807bd7acef1a2471f20e928626c23ce0b9f90b326cf5f82d12480a4e", Hex(key));

        var mac = new byte[16];
        Blake2s.Mac(key, new byte[116], mac);
        Assert.StartsWith("5b6cf824", Hex(mac));

        var full = new Blake2s(32, key);
        full.Update(new byte[116]);
        var truncated = new byte[32];
        full.Finish(truncated);
        Assert.StartsWith("fe519c80", Hex(truncated));
    }

    [Fact]
    public void Feeding_input_in_pieces_gives_the_same_digest_as_all_at_once()
    {
        var data = Sequence(1000);
        var whole = new byte[32];
        Blake2s.Hash(data, whole);

        foreach (var chunk in new[] { 1, 7, 63, 64, 65, 128, 999 })
        {
            var pieces = new Blake2s(32);
            for (var i = 0; i < data.Length; i += chunk) pieces.Update(data.AsSpan(i, Math.Min(chunk, data.Length - i)));
            var digest = new byte[32];
            pieces.Finish(digest);
            Assert.Equal(Hex(whole), Hex(digest));
        }
    }

    [Fact]
    public void Invalid_sizes_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Blake2s(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Blake2s(33));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Blake2s(32, new byte[33]));
    }
}
