using FsCheck.Xunit;
using Weft.Contracts.Crypto;

namespace Weft.Contracts.Tests.Crypto;

public class Blake2sProperties
{
    [Property]
    public bool Any_split_of_the_input_gives_the_same_digest(byte[] data, int split)
    {
        data ??= [];
        var at = data.Length == 0 ? 0 : Math.Abs(split % (data.Length + 1));
        var whole = new byte[32];
        Blake2s.Hash(data, whole);
        var parts = new byte[32];
        Blake2s.Hash(data.AsSpan(0, at), data.AsSpan(at), parts);
        return whole.AsSpan().SequenceEqual(parts);
    }

    [Property]
    public bool Different_digest_lengths_are_different_functions(byte[] data)
    {
        var sixteen = new byte[16];
        Blake2s.Mac(new byte[16], data ?? [], sixteen);
        var full = new Blake2s(32, new byte[16]);
        full.Update(data ?? []);
        var thirtyTwo = new byte[32];
        full.Finish(thirtyTwo);
        return !sixteen.AsSpan().SequenceEqual(thirtyTwo.AsSpan(0, 16));
    }
}
