using Google.Protobuf;

namespace Weft.Cluster.Tailnets;

/// <summary>
/// A repeated message field written from messages already encoded: each one's tag and length, then
/// its bytes, as serialising the message in place would write it. Deltas and full maps append what
/// many recipients share this way instead of serialising it again for each.
/// </summary>
public static class EncodedFields
{
    public static int Size(int field, IEnumerable<ByteString> messages)
    {
        var tag = CodedOutputStream.ComputeTagSize(field);
        return messages.Sum(message => tag + CodedOutputStream.ComputeBytesSize(message));
    }

    public static void Write(CodedOutputStream output, int field, IEnumerable<ByteString> messages)
    {
        foreach (var message in messages)
        {
            output.WriteTag(field, WireFormat.WireType.LengthDelimited);
            output.WriteBytes(message);
        }
    }
}
