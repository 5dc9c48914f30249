using Google.Protobuf;
using Weft.Contracts.Control;

namespace Weft.Cluster.Devices;

/// <summary>
/// Turns the delta or full-map bytes a tailnet sent into the <see cref="ServerMessage"/> an agent
/// receives, numbered by the device's stream, without parsing them. A protobuf scalar field that
/// appears twice takes its last value, a repeated one appends, and the tailnet never sets the version
/// fields or the coordinators: so the message is the tailnet's bytes wrapped as field <c>delta</c> (or
/// <c>netmap</c>) with those fields appended. Parsing each delta only to set two numbers and
/// serialising it again cost 12% of the coordinator's CPU at 2,000 devices; a full map of 1,000 peers
/// is 160 KB, parsed and written again for every device that joins.
/// <para>
/// The bytes are still walked field by field (tags and lengths, nothing allocated): malformed bytes
/// throw here, so the entity restarts on them as it did when it parsed, and a delta never enters the
/// delta log, where every resume would send it to the agent again.
/// </para>
/// </summary>
public static class VersionStamp
{
    private const uint DeltaTag = (ServerMessage.DeltaFieldNumber << 3) | (uint)WireFormat.WireType.LengthDelimited;
    private const uint NetMapTag = (ServerMessage.NetmapFieldNumber << 3) | (uint)WireFormat.WireType.LengthDelimited;
    private const uint DeltaVersionTag = (NetMapDelta.VersionFieldNumber << 3) | (uint)WireFormat.WireType.Varint;
    private const uint DeltaBaseVersionTag = (NetMapDelta.BaseVersionFieldNumber << 3) | (uint)WireFormat.WireType.Varint;

    /// <summary>A tailnet's delta as the message <c>delta</c>, numbered <paramref name="baseVersion"/> to <paramref name="version"/>.</summary>
    /// <exception cref="InvalidProtocolBufferException">The delta is not a well-formed protobuf message.</exception>
    public static byte[] Delta(byte[] delta, ulong baseVersion, ulong version)
    {
        CheckWireFormat(delta);
        var inner = delta.Length + VarintSize(DeltaVersionTag) + VarintSize(version) + VarintSize(DeltaBaseVersionTag) + VarintSize(baseVersion);
        var (message, at) = Envelope(DeltaTag, delta, inner);
        at = WriteVarint(message, at, DeltaVersionTag);
        at = WriteVarint(message, at, version);
        at = WriteVarint(message, at, DeltaBaseVersionTag);
        WriteVarint(message, at, baseVersion);
        return message;
    }

    /// <summary>A tailnet's full map as the message <c>netmap</c>, at <paramref name="version"/>, with the coordinators the agent may dial.</summary>
    /// <exception cref="InvalidProtocolBufferException">The map is not a well-formed protobuf message.</exception>
    public static byte[] FullMap(byte[] netmap, ulong version, IReadOnlyList<string> coordinators)
    {
        CheckWireFormat(netmap);
        var tail = new NetMap { Version = version, Coordinators = { coordinators } }.ToByteArray();
        var (message, at) = Envelope(NetMapTag, netmap, netmap.Length + tail.Length);
        tail.CopyTo(message.AsSpan(at));
        return message;
    }

    /// <summary>The outer message: the field's tag and length, then <paramref name="body"/>, with room for <paramref name="inner"/> - body bytes after it.</summary>
    private static (byte[] Message, int At) Envelope(uint tag, byte[] body, int inner)
    {
        var message = new byte[VarintSize(tag) + VarintSize((ulong)inner) + inner];
        var at = WriteVarint(message, 0, tag);
        at = WriteVarint(message, at, (ulong)inner);
        body.CopyTo(message.AsSpan(at));
        return (message, at + body.Length);
    }

    private static void CheckWireFormat(byte[] bytes)
    {
        var input = new CodedInputStream(bytes);
        while (input.ReadTag() != 0) input.SkipLastField();
    }

    private static int VarintSize(ulong value)
    {
        var size = 1;
        while (value >= 0x80)
        {
            value >>= 7;
            size++;
        }
        return size;
    }

    private static int WriteVarint(byte[] buffer, int at, ulong value)
    {
        while (value >= 0x80)
        {
            buffer[at++] = (byte)(value | 0x80);
            value >>= 7;
        }
        buffer[at++] = (byte)value;
        return at;
    }
}
