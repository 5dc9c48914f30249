using HdrHistogram;
using HdrHistogram.Utilities;

namespace Weft.LoadTest.Measurement;

/// <summary>
/// A latency histogram as text (HdrHistogram's compressed encoding, in base64) for the result file,
/// so that shards' histograms can be added together and the percentiles taken over the whole run.
/// </summary>
public static class HistogramCodec
{
    /// <summary>Largest encoded histogram accepted back (a 3-digit histogram to an hour in µs compresses to a few KB).</summary>
    public const int MaxEncodedBytes = 4 * 1024 * 1024;

    public static string Encode(HistogramBase histogram)
    {
        var copy = histogram.Copy(); // a concurrent histogram may still be recorded into
        var buffer = ByteBuffer.Allocate(copy.GetNeededByteBufferCapacity());
        var length = HistogramEncoding.EncodeIntoCompressedByteBuffer(copy, buffer);
        buffer.Position = 0;
        var bytes = new byte[length];
        for (var i = 0; i < length; i++) bytes[i] = buffer.Get();
        return Convert.ToBase64String(bytes);
    }

    /// <exception cref="FormatException">The text is not an encoded histogram.</exception>
    public static HistogramBase Decode(string text)
    {
        if (text.Length > MaxEncodedBytes / 3 * 4 + 4) throw new FormatException($"an encoded histogram of {text.Length} characters is larger than {MaxEncodedBytes} bytes");
        var bytes = Convert.FromBase64String(text);
        try
        {
            return HistogramEncoding.DecodeFromCompressedByteBuffer(ByteBuffer.Allocate(bytes), 0);
        }
        catch (Exception e) when (e is not FormatException and not OutOfMemoryException)
        {
            throw new FormatException($"not an encoded histogram ({e.GetType().Name}: {e.Message})", e);
        }
    }
}
