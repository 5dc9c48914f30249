using System.Text;
using Weft.Contracts.Crypto;

namespace Weft.Contracts.Tests.Crypto;

public class WireGuardConstantsTests
{
    [Fact]
    public void The_initial_chaining_key_and_hash_match_the_protocol()
    {
        var ci = new byte[32];
        Blake2s.Hash(Encoding.ASCII.GetBytes("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"), ci);
        var hi = new byte[32];
        Blake2s.Hash(ci, Encoding.ASCII.GetBytes("WireGuard v1 zx2c4 Jason@zx2c4.com"), hi);

        Assert.Equal("60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36", Convert.ToHexStringLower(ci));
        Assert.Equal("2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3", Convert.ToHexStringLower(hi));
    }

    [Fact]
    public void The_control_protocol_initial_hash_matches()
    {
        var h = new byte[32];
        Blake2s.Hash(Encoding.ASCII.GetBytes("Noise_IK_25519_ChaChaPoly_BLAKE2s"), h);
        Assert.Equal("bbea022b948cf3bc5857d70804229179e1116bc40cb8cc074835349c464bca36", Convert.ToHexStringLower(h));
    }
}
