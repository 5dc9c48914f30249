using System.IO.Compression;
using HdrHistogram;
using HdrHistogram.Encoding;
using HdrHistogram.Utilities;

namespace Weft.LoadTest.Measurement;

/// <summary>
/// A latency histogram as text for the result file (HdrHistogram's V2 encoding, deflated, in base64),
/// so that shards' histograms can be added together and the percentiles taken over the whole run.
/// HdrHistogram.NET's own compressed decoding fails on large histograms (a single read of its inflater
/// comes up short), so the deflating is done here, around its uncompressed encoding.
/// </summary>
public static class HistogramCodec
{
    /// <summary>Largest encoded histogram accepted back, compressed or not (a 3-digit histogram to an hour in µs takes well under 1 MB).</summary>
    public const int MaxEncodedBytes = 4 * 1024 * 1024;

    public static string Encode(HistogramBase histogram)
    {
        var copy = histogram.Copy(); // a concurrent histogram may still be recorded into
        var buffer = ByteBuffer.Allocate(copy.GetNeededByteBufferCapacity());
        var length = copy.Encode(buffer, HistogramEncoderV2.Instance);
        buffer.Position = 0;
        using var packed = new MemoryStream();
        using (var deflate = new DeflateStream(packed, CompressionLevel.Optimal, leaveOpen: true))
            for (var i = 0; i < length; i++) deflate.WriteByte(buffer.Get());
        return Convert.ToBase64String(packed.GetBuffer(), 0, (int)packed.Length);
    }

    /// <exception cref="FormatException">The text is not an encoded histogram.</exception>
    public static HistogramBase Decode(string text)
    {
        if (text.Length > MaxEncodedBytes / 3 * 4 + 4) throw new FormatException($"an encoded histogram of {text.Length} characters is larger than {MaxEncodedBytes} bytes");
        var packed = Convert.FromBase64String(text);
        try
        {
            using var inflate = new DeflateStream(new MemoryStream(packed), CompressionMode.Decompress);
            using var plain = new MemoryStream();
            var chunk = new byte[81920];
            int read;
            while ((read = inflate.Read(chunk, 0, chunk.Length)) > 0)
            {
                if (plain.Length + read > MaxEncodedBytes) throw new FormatException($"an encoded histogram inflates to more than {MaxEncodedBytes} bytes");
                plain.Write(chunk, 0, read);
            }
            return HistogramEncoding.DecodeFromByteBuffer(ByteBuffer.Allocate(plain.ToArray()), 0, null);
        }
        catch (Exception e) when (e is not FormatException and not OutOfMemoryException)
        {
            throw new FormatException($"not an encoded histogram ({e.GetType().Name}: {e.Message})", e);
        }
    }
}
