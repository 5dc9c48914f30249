using System.Buffers.Binary;
using System.Net;
using System.Text;
using Weft.NodeAgent.Dns;

namespace Weft.NodeAgent.Tests.Dns;

/// <summary>
/// DNS messages for the tests, built and read byte by byte here rather than with the code under test,
/// so that a mistake the parser and the tests might share cannot hide.
/// </summary>
internal static class DnsWire
{
    public const ushort A = 1, Ptr = 12, Mx = 15, Txt = 16, Aaaa = 28, Opt = 41, Any = 255;
    public const ushort ClassIn = 1, ClassChaos = 3, ClassAny = 255;
    public const ushort RecursionDesired = 0x0100;

    public static byte[] Header(ushort id = 0x1234, ushort flags = RecursionDesired, int questions = 1, int answers = 0, int authorities = 0, int additionals = 0)
    {
        var header = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(header, id);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(2), flags);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(4), (ushort)questions);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), (ushort)answers);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(8), (ushort)authorities);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(10), (ushort)additionals);
        return header;
    }

    /// <summary>"web.acme.weft.internal" (trailing dot optional) in wire form; "" or "." is the root.</summary>
    public static byte[] Name(string name)
    {
        var bytes = new List<byte>();
        foreach (var label in name.TrimEnd('.').Split('.', StringSplitOptions.RemoveEmptyEntries))
        {
            bytes.Add((byte)label.Length);
            bytes.AddRange(Encoding.ASCII.GetBytes(label));
        }
        bytes.Add(0);
        return [.. bytes];
    }

    public static byte[] Question(string name, ushort type = A, ushort @class = ClassIn) => [.. Name(name), .. UInt16(type), .. UInt16(@class)];

    /// <summary>An EDNS OPT record (RFC 6891 6.1.2) with the given options, each already framed by <see cref="Option"/>.</summary>
    public static byte[] OptRecord(ushort payloadSize = 1232, byte version = 0, params byte[][] options)
    {
        var data = options.SelectMany(o => o).ToArray();
        return [0, .. UInt16(Opt), .. UInt16(payloadSize), 0, version, 0, 0, .. UInt16((ushort)data.Length), .. data];
    }

    public static byte[] Option(ushort code, byte[] value) => [.. UInt16(code), .. UInt16((ushort)value.Length), .. value];

    /// <summary>The COOKIE option (RFC 7873) that dig sends by default: an 8-byte client cookie.</summary>
    public static byte[] ClientCookie => Option(10, [1, 2, 3, 4, 5, 6, 7, 8]);

    public static byte[] Query(string name, ushort type = A, ushort id = 0x1234, bool recursionDesired = true, int opcode = 0,
        ushort @class = ClassIn, ushort? ednsPayload = null, byte ednsVersion = 0)
    {
        var flags = (ushort)((opcode << 11) | (recursionDesired ? RecursionDesired : 0));
        var header = Header(id, flags, additionals: ednsPayload is null ? 0 : 1);
        var question = Question(name, type, @class);
        return ednsPayload is { } payload ? [.. header, .. question, .. OptRecord(payload, ednsVersion, ClientCookie)] : [.. header, .. question];
    }

    public static byte[] ReverseQuery(string address, ushort id = 0x1234) => Query(DnsNameTable.ReverseName(IPAddress.Parse(address)), Ptr, id);

    public static byte[] UInt16(ushort value) => [(byte)(value >> 8), (byte)value];
}

internal sealed record DnsTestRecord(string Name, ushort Type, ushort Class, uint Ttl, byte[] Data)
{
    /// <summary>For a PTR record: the target, decoded where it sits in the message.</summary>
    public string? Target { get; init; }
}

/// <summary>A response, read strictly: every count honoured, every pointer checked, no byte left over.</summary>
internal sealed class DnsTestResponse
{
    public required ushort Id { get; init; }
    public required ushort Flags { get; init; }
    public required IReadOnlyList<(string Name, ushort Type, ushort Class)> Questions { get; init; }
    public required IReadOnlyList<DnsTestRecord> Answers { get; init; }
    public required IReadOnlyList<DnsTestRecord> Authorities { get; init; }
    public required IReadOnlyList<DnsTestRecord> Additionals { get; init; }

    public bool IsResponse => (Flags & 0x8000) != 0;
    public int Opcode => (Flags >> 11) & 0xF;
    public bool Authoritative => (Flags & 0x0400) != 0;
    public bool Truncated => (Flags & 0x0200) != 0;
    public bool RecursionDesired => (Flags & 0x0100) != 0;
    public bool RecursionAvailable => (Flags & 0x0080) != 0;
    public DnsTestRecord? Opt => Additionals.SingleOrDefault(r => r.Type == DnsWire.Opt);
    /// <summary>The full response code: the header's 4 bits and, with EDNS, the OPT record's upper 8.</summary>
    public DnsResponseCode Code => (DnsResponseCode)((Flags & 0xF) | (Opt is null ? 0 : (int)(Opt.Ttl >> 24) << 4));
    public IReadOnlyList<IPAddress> Addresses => [.. Answers.Where(a => a.Type is DnsWire.A or DnsWire.Aaaa).Select(a => new IPAddress(a.Data))];

    public static DnsTestResponse Read(ReadOnlySpan<byte> bytes)
    {
        var message = bytes.ToArray();
        if (message.Length < 12) throw new InvalidDataException($"response of {message.Length} bytes has no header");
        var offset = 12;
        var questions = new List<(string, ushort, ushort)>();
        for (var i = 0; i < Count(message, 4); i++)
        {
            var name = ReadName(message, ref offset);
            Need(message, offset, 4);
            questions.Add((name, Read16(message, offset), Read16(message, offset + 2)));
            offset += 4;
        }
        var answers = ReadRecords(message, ref offset, Count(message, 6));
        var authorities = ReadRecords(message, ref offset, Count(message, 8));
        var additionals = ReadRecords(message, ref offset, Count(message, 10));
        if (offset != message.Length) throw new InvalidDataException($"{message.Length - offset} bytes after the last record");
        return new DnsTestResponse
        {
            Id = Read16(message, 0),
            Flags = Read16(message, 2),
            Questions = questions,
            Answers = answers,
            Authorities = authorities,
            Additionals = additionals,
        };
    }

    private static int Count(byte[] message, int at) => Read16(message, at);

    private static ushort Read16(byte[] message, int at) => BinaryPrimitives.ReadUInt16BigEndian(message.AsSpan(at));

    private static void Need(byte[] message, int offset, int count)
    {
        if (message.Length - offset < count) throw new InvalidDataException($"response ends at {message.Length}, inside a field at {offset}");
    }

    private static List<DnsTestRecord> ReadRecords(byte[] message, ref int offset, int count)
    {
        var records = new List<DnsTestRecord>();
        for (var i = 0; i < count; i++)
        {
            var name = ReadName(message, ref offset);
            Need(message, offset, 10);
            var type = Read16(message, offset);
            var data = message.AsSpan(offset + 10);
            var length = Read16(message, offset + 8);
            Need(message, offset + 10, length);
            var dataStart = offset + 10;
            var record = new DnsTestRecord(name, type, Read16(message, offset + 2), BinaryPrimitives.ReadUInt32BigEndian(message.AsSpan(offset + 4)), data[..length].ToArray());
            if (type == DnsWire.Ptr)
            {
                var at = dataStart;
                record = record with { Target = ReadName(message, ref at) };
                if (at != dataStart + length) throw new InvalidDataException("PTR data longer than its name");
            }
            records.Add(record);
            offset = dataStart + length;
        }
        return records;
    }

    /// <summary>A name as dig prints it ("web.acme.weft.internal."), following at most 16 pointers.</summary>
    private static string ReadName(byte[] message, ref int offset)
    {
        var labels = new List<string>();
        var position = offset;
        var jumped = false;
        for (var hops = 0; ; )
        {
            Need(message, position, 1);
            var length = message[position];
            if ((length & 0xC0) == 0xC0)
            {
                Need(message, position, 2);
                if (++hops > 16) throw new InvalidDataException("too many compression pointers");
                if (!jumped) offset = position + 2;
                jumped = true;
                position = ((length & 0x3F) << 8) | message[position + 1];
                continue;
            }
            if (length > 63) throw new InvalidDataException($"label length {length}");
            if (length == 0)
            {
                if (!jumped) offset = position + 1;
                return labels.Count == 0 ? "." : string.Join('.', labels) + ".";
            }
            Need(message, position + 1, length);
            labels.Add(Encoding.ASCII.GetString(message, position + 1, length));
            position += 1 + length;
        }
    }
}
