namespace Weft.Fuzz.Engine;

/// <summary>
/// Byte-level mutations in the manner of libFuzzer and AFL: bit flips, interesting values, inserted,
/// erased, repeated and swapped ranges, dictionary tokens and splices with other corpus entries.
/// Several are stacked on each input.
/// </summary>
public sealed class Mutator(Random random, IReadOnlyList<byte[]> tokens, int maxBytes)
{
    private static readonly byte[] InterestingBytes = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x10, 0x20, 0x40, (byte)'"', (byte)'\\', (byte)'\n', (byte)'/', (byte)'*', (byte)'{', (byte)'['];
    private static readonly uint[] InterestingWords = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff];

    public byte[] Mutate(byte[] input, Func<byte[]> otherCorpusEntry)
    {
        var data = new List<byte>(input);
        var rounds = 1 + random.Next(random.Next(2) == 0 ? 2 : 8);
        for (var i = 0; i < rounds; i++) MutateOnce(data, otherCorpusEntry);
        if (data.Count > maxBytes) data.RemoveRange(maxBytes, data.Count - maxBytes);
        return data.ToArray();
    }

    private void MutateOnce(List<byte> data, Func<byte[]> other)
    {
        switch (random.Next(data.Count == 0 ? 3 : 13))
        {
            case 0:
                data.InsertRange(Position(data, inclusiveEnd: true), RandomBytes(1 + random.Next(8)));
                break;
            case 1 when tokens.Count > 0:
                data.InsertRange(Position(data, inclusiveEnd: true), tokens[random.Next(tokens.Count)]);
                break;
            case 2:
            {
                var splice = other();
                if (splice.Length == 0) break;
                var start = random.Next(splice.Length);
                var length = 1 + random.Next(splice.Length - start);
                data.InsertRange(Position(data, inclusiveEnd: true), splice.Skip(start).Take(length));
                break;
            }
            case 3:
                data[random.Next(data.Count)] ^= (byte)(1 << random.Next(8));
                break;
            case 4:
                data[random.Next(data.Count)] = (byte)random.Next(256);
                break;
            case 5:
                data[random.Next(data.Count)] = InterestingBytes[random.Next(InterestingBytes.Length)];
                break;
            case 6:
            {
                // A length or count field: a little- or big-endian interesting value.
                var word = InterestingWords[random.Next(InterestingWords.Length)];
                var width = random.Next(3) switch { 0 => 1, 1 => 2, _ => 4 };
                var at = random.Next(data.Count);
                var bigEndian = random.Next(2) == 0;
                for (var b = 0; b < width && at + b < data.Count; b++)
                    data[at + b] = (byte)(word >> (8 * (bigEndian ? width - 1 - b : b)));
                break;
            }
            case 7:
            {
                var at = random.Next(data.Count);
                data.RemoveRange(at, 1 + random.Next(Math.Min(data.Count - at, 1 + random.Next(64))));
                break;
            }
            case 8:
            {
                // Repeat a range many times: deep nesting, long names, many fields.
                var at = random.Next(data.Count);
                var length = 1 + random.Next(Math.Min(data.Count - at, 16));
                var chunk = data.GetRange(at, length);
                var times = random.Next(4) == 0 ? 64 + random.Next(4096) : 1 + random.Next(8);
                for (var t = 0; t < times && data.Count + length <= maxBytes; t++) data.InsertRange(at, chunk);
                break;
            }
            case 9:
            {
                var a = random.Next(data.Count);
                var b = random.Next(data.Count);
                (data[a], data[b]) = (data[b], data[a]);
                break;
            }
            case 10 when tokens.Count > 0:
            {
                var token = tokens[random.Next(tokens.Count)];
                var at = random.Next(data.Count);
                for (var t = 0; t < token.Length; t++)
                    if (at + t < data.Count) data[at + t] = token[t];
                    else data.Add(token[t]);
                break;
            }
            case 11:
            {
                var cut = random.Next(data.Count);
                data.RemoveRange(cut, data.Count - cut);
                break;
            }
            case 12:
            {
                // An ASCII digit run: a number one off, huge or negative.
                var at = random.Next(data.Count);
                var number = random.Next(5) switch { 0 => "-1", 1 => "0", 2 => "99999999999999999999", 3 => "2147483648", _ => random.Next(70000).ToString() };
                data.InsertRange(at, System.Text.Encoding.ASCII.GetBytes(number));
                break;
            }
            default:
                data.Insert(Position(data, inclusiveEnd: true), (byte)random.Next(256));
                break;
        }
    }

    private int Position(List<byte> data, bool inclusiveEnd) => random.Next(data.Count + (inclusiveEnd ? 1 : 0));

    private byte[] RandomBytes(int count)
    {
        var bytes = new byte[count];
        random.NextBytes(bytes);
        return bytes;
    }
}
