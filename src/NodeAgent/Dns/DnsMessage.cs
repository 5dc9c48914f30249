using System.Buffers.Binary;

namespace Weft.NodeAgent.Dns;

/// <summary>Record types MagicDNS answers or reads (RFC 1035 3.2.2, RFC 3596, RFC 6891); any other value passes through as a number.</summary>
public enum DnsRecordType : ushort
{
    A = 1,
    Ptr = 12,
    Aaaa = 28,
    Opt = 41,
    Any = 255,
}

/// <summary>
/// Response codes (RFC 1035 4.1.1). <see cref="BadVersion"/> is an extended code (RFC 6891 6.1.3): its
/// low 4 bits go in the header and the rest in the OPT record.
/// </summary>
public enum DnsResponseCode : ushort
{
    NoError = 0,
    FormatError = 1,
    ServerFailure = 2,
    /// <summary>NXDOMAIN: the name does not exist.</summary>
    NameError = 3,
    NotImplemented = 4,
    Refused = 5,
    BadVersion = 16,
}

/// <summary>A query that breaks RFC 1035's rules; the message says which one, for logs and tests.</summary>
public sealed class DnsFormatException(string message) : Exception(message);

/// <summary>
/// One parsed query: its header fields, its single question and what its EDNS OPT record (if any)
/// advertised. <see cref="Name"/> is the question's name in uncompressed wire form, in the case it
/// was asked in (the answer echoes it unchanged, which resolvers that randomise case check).
/// </summary>
public readonly ref struct DnsQuery
{
    public ushort Id { get; init; }
    public ushort Flags { get; init; }
    public ReadOnlySpan<byte> Name { get; init; }
    public DnsRecordType Type { get; init; }
    public ushort Class { get; init; }
    public bool HasEdns { get; init; }
    /// <summary>The largest UDP response the client accepts, as advertised (RFC 6891 6.2.3); meaningful only with <see cref="HasEdns"/>.</summary>
    public ushort EdnsUdpPayloadSize { get; init; }
    public byte EdnsVersion { get; init; }

    public int Opcode => (Flags & DnsMessage.OpcodeMask) >> 11;
    public bool RecursionDesired => (Flags & DnsMessage.FlagRecursionDesired) != 0;
}

/// <summary>
/// The DNS wire format, as far as an authoritative UDP server needs it: a strict query parser and the
/// writers the resolver assembles its responses from. Every constant of the protocol lives here.
/// </summary>
/// <remarks>
/// The parser is strict so that what it accepts is unambiguous: exactly one question, no answer or
/// authority records, at most one OPT record, and no bytes after the last record (as BIND, which
/// answers trailing garbage with FORMERR). Compression pointers are followed, but every jump must land
/// before the start of the run of labels it leaves: that is how compressors write names (they point
/// back at a name already written), and it makes the jump targets strictly decrease, so no crafted
/// message can make the parser loop.
/// </remarks>
public static class DnsMessage
{
    public const int HeaderLength = 12;
    /// <summary>RFC 1035 2.3.4: a name is at most 255 bytes in wire form (root label included), a label at most 63.</summary>
    public const int MaxNameLength = 255;
    public const int MaxLabelLength = 63;
    /// <summary>RFC 1035 4.2.1: without EDNS, a UDP message carries at most 512 bytes.</summary>
    public const int ClassicUdpPayload = 512;
    /// <summary>
    /// What we advertise in our OPT record and the most we send: the 1280-byte tailnet MTU (IPv6's
    /// minimum) less the IPv6 and UDP headers, so an answer never fragments. DNS Flag Day 2020's default.
    /// </summary>
    public const int MaxUdpPayload = 1232;
    public const ushort ClassIn = 1;
    public const int OpcodeQuery = 0;

    // Header flag bits (RFC 1035 4.1.1; CD from RFC 4035 3.2.2, which says a server copies it).
    public const ushort FlagResponse = 0x8000;
    public const ushort OpcodeMask = 0x7800;
    public const ushort FlagAuthoritative = 0x0400;
    public const ushort FlagTruncated = 0x0200;
    public const ushort FlagRecursionDesired = 0x0100;
    public const ushort FlagRecursionAvailable = 0x0080;
    public const ushort FlagCheckingDisabled = 0x0010;

    /// <summary>An answer record's bytes besides its data: owner pointer, type, class, TTL, data length.</summary>
    internal const int AnswerOverhead = 2 + 2 + 2 + 4 + 2;
    /// <summary>Our OPT record: root owner, type, class (payload size), TTL (extended RCODE, version, flags), empty data.</summary>
    internal const int OptRecordLength = 1 + 2 + 2 + 4 + 2;

    private const int PointerMask = 0xC0;
    private const int QuestionOffset = HeaderLength;
    /// <summary>Type, class, TTL and data length: what follows a record's owner name.</summary>
    private const int RecordFixedLength = 10;

    /// <summary>
    /// Parses a query, writing its question's name into <paramref name="nameBuffer"/> (at least
    /// <see cref="MaxNameLength"/> bytes), which the returned <see cref="DnsQuery.Name"/> points into.
    /// </summary>
    /// <exception cref="DnsFormatException">The message is not a well-formed query.</exception>
    public static DnsQuery ParseQuery(ReadOnlySpan<byte> message, Span<byte> nameBuffer)
    {
        if (nameBuffer.Length < MaxNameLength)
            throw new ArgumentException($"the name buffer must hold {MaxNameLength} bytes", nameof(nameBuffer));
        if (message.Length < HeaderLength)
            throw new DnsFormatException($"message of {message.Length} bytes is shorter than the {HeaderLength}-byte header");
        var flags = BinaryPrimitives.ReadUInt16BigEndian(message[2..]);
        if ((flags & FlagResponse) != 0) throw new DnsFormatException("message is a response (QR=1), not a query");
        var questions = BinaryPrimitives.ReadUInt16BigEndian(message[4..]);
        var answers = BinaryPrimitives.ReadUInt16BigEndian(message[6..]);
        var authorities = BinaryPrimitives.ReadUInt16BigEndian(message[8..]);
        var additionals = BinaryPrimitives.ReadUInt16BigEndian(message[10..]);
        if (questions != 1) throw new DnsFormatException($"QDCOUNT is {questions}; a query carries exactly one question");
        if (answers != 0) throw new DnsFormatException($"ANCOUNT is {answers}; a query carries no answers");
        if (authorities != 0) throw new DnsFormatException($"NSCOUNT is {authorities}; a query carries no authority records");

        var offset = ReadName(message, QuestionOffset, nameBuffer, out var nameLength, record: 0);
        if (message.Length - offset < 4) throw new DnsFormatException("message ends inside the question");
        var type = (DnsRecordType)BinaryPrimitives.ReadUInt16BigEndian(message[offset..]);
        var @class = BinaryPrimitives.ReadUInt16BigEndian(message[(offset + 2)..]);
        offset += 4;

        var hasEdns = false;
        ushort payloadSize = 0;
        byte version = 0;
        Span<byte> owner = stackalloc byte[MaxNameLength];
        for (var record = 1; record <= additionals; record++)
        {
            offset = ReadName(message, offset, owner, out var ownerLength, record);
            if (message.Length - offset < RecordFixedLength) throw new DnsFormatException($"message ends inside {Where(record)}");
            var recordType = (DnsRecordType)BinaryPrimitives.ReadUInt16BigEndian(message[offset..]);
            var recordClass = BinaryPrimitives.ReadUInt16BigEndian(message[(offset + 2)..]);
            var ttl = BinaryPrimitives.ReadUInt32BigEndian(message[(offset + 4)..]);
            var dataLength = BinaryPrimitives.ReadUInt16BigEndian(message[(offset + 8)..]);
            offset += RecordFixedLength;
            if (message.Length - offset < dataLength) throw new DnsFormatException($"message ends inside the data of {Where(record)}");
            var data = message.Slice(offset, dataLength);
            offset += dataLength;

            // Anything else here (a TSIG, say) is checked for shape and otherwise ignored: we sign nothing.
            if (recordType != DnsRecordType.Opt) continue;
            if (hasEdns) throw new DnsFormatException("more than one OPT record (RFC 6891 6.1.1 allows one)");
            if (ownerLength != 1) throw new DnsFormatException("OPT record is not owned by the root name");
            CheckEdnsOptions(data);
            hasEdns = true;
            payloadSize = recordClass;
            version = (byte)(ttl >> 16);
        }
        var trailing = message.Length - offset;
        if (trailing != 0) throw new DnsFormatException($"{trailing} trailing byte{(trailing == 1 ? "" : "s")} after the last record");

        return new DnsQuery
        {
            Id = BinaryPrimitives.ReadUInt16BigEndian(message),
            Flags = flags,
            Name = nameBuffer[..nameLength],
            Type = type,
            Class = @class,
            HasEdns = hasEdns,
            EdnsUdpPayloadSize = payloadSize,
            EdnsVersion = version,
        };
    }

    /// <summary>
    /// Reads the name at <paramref name="start"/> into <paramref name="destination"/> in uncompressed
    /// wire form, following compression pointers (RFC 1035 4.1.4). Returns the offset just past the
    /// name where it sits in the message (after its first pointer, if it has one). <paramref name="record"/>
    /// says where the name is, for error messages: 0 for the question, n for the nth additional record.
    /// </summary>
    private static int ReadName(ReadOnlySpan<byte> message, int start, Span<byte> destination, out int length, int record)
    {
        var written = 0;
        var resumeAt = -1;
        var position = start;
        // Every jump must land before this: the start of the run of labels being read.
        var floor = start;
        while (true)
        {
            if (position >= message.Length) throw new DnsFormatException($"message ends inside {Where(record)}");
            int prefix = message[position];
            if ((prefix & PointerMask) == PointerMask)
            {
                if (position + 1 >= message.Length) throw new DnsFormatException($"message ends inside {Where(record)}");
                var target = ((prefix & ~PointerMask) << 8) | message[position + 1];
                if (target >= message.Length)
                    throw new DnsFormatException($"compression pointer at offset {position} to offset {target} is past the end of the {message.Length}-byte message");
                if (target < HeaderLength)
                    throw new DnsFormatException($"compression pointer at offset {position} to offset {target} points into the header");
                if (target >= floor)
                    throw new DnsFormatException($"compression pointer loop: the pointer at offset {position} jumps to {target}, not before {floor}");
                if (resumeAt < 0) resumeAt = position + 2;
                position = floor = target;
                continue;
            }
            if (prefix > MaxLabelLength)
                // 0x40-0xBF: the extended label types (RFC 6891 5 retired the only one ever defined).
                throw new DnsFormatException($"label of {prefix} bytes exceeds {MaxLabelLength}");
            if (prefix == 0)
            {
                destination[written++] = 0;
                length = written;
                return resumeAt >= 0 ? resumeAt : position + 1;
            }
            // This label plus at least the root label must still fit.
            if (written + 1 + prefix + 1 > MaxNameLength)
                throw new DnsFormatException($"name of at least {written + 1 + prefix + 1} bytes exceeds {MaxNameLength}");
            if (message.Length - position - 1 < prefix) throw new DnsFormatException($"message ends inside {Where(record)}");
            message.Slice(position, 1 + prefix).CopyTo(destination[written..]);
            written += 1 + prefix;
            position += 1 + prefix;
        }
    }

    private static string Where(int record) => record == 0 ? "the question" : $"additional record {record}";

    /// <summary>The OPT record's data is a list of (code, length, value) options (RFC 6891 6.1.2); unknown ones are ignored, torn ones are not.</summary>
    private static void CheckEdnsOptions(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            if (data.Length < 4) throw new DnsFormatException("EDNS option header cut short inside the OPT record");
            var code = BinaryPrimitives.ReadUInt16BigEndian(data);
            var length = BinaryPrimitives.ReadUInt16BigEndian(data[2..]);
            if (data.Length - 4 < length) throw new DnsFormatException($"EDNS option {code} of {length} bytes overruns the OPT record");
            data = data[(4 + length)..];
        }
    }

    internal static void WriteHeader(Span<byte> response, ushort id, ushort flags, int questions, int answers, int additionals)
    {
        BinaryPrimitives.WriteUInt16BigEndian(response, id);
        BinaryPrimitives.WriteUInt16BigEndian(response[2..], flags);
        BinaryPrimitives.WriteUInt16BigEndian(response[4..], (ushort)questions);
        BinaryPrimitives.WriteUInt16BigEndian(response[6..], (ushort)answers);
        BinaryPrimitives.WriteUInt16BigEndian(response[8..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(response[10..], (ushort)additionals);
    }

    /// <summary>Writes the question right after the header, uncompressed, so answers can point at its name. Returns the offset after it.</summary>
    internal static int WriteQuestion(Span<byte> response, ReadOnlySpan<byte> name, DnsRecordType type, ushort @class)
    {
        name.CopyTo(response[QuestionOffset..]);
        var offset = QuestionOffset + name.Length;
        BinaryPrimitives.WriteUInt16BigEndian(response[offset..], (ushort)type);
        BinaryPrimitives.WriteUInt16BigEndian(response[(offset + 2)..], @class);
        return offset + 4;
    }

    /// <summary>Writes an IN-class answer owned by the question's name (a pointer to it). Returns the offset after it.</summary>
    internal static int WriteAnswer(Span<byte> response, int offset, DnsRecordType type, uint ttl, ReadOnlySpan<byte> data)
    {
        BinaryPrimitives.WriteUInt16BigEndian(response[offset..], (ushort)((PointerMask << 8) | QuestionOffset));
        BinaryPrimitives.WriteUInt16BigEndian(response[(offset + 2)..], (ushort)type);
        BinaryPrimitives.WriteUInt16BigEndian(response[(offset + 4)..], ClassIn);
        BinaryPrimitives.WriteUInt32BigEndian(response[(offset + 6)..], ttl);
        BinaryPrimitives.WriteUInt16BigEndian(response[(offset + 10)..], (ushort)data.Length);
        data.CopyTo(response[(offset + AnswerOverhead)..]);
        return offset + AnswerOverhead + data.Length;
    }

    /// <summary>Writes our OPT record (RFC 6891 6.1.2): version 0, no options. Returns the offset after it.</summary>
    internal static int WriteOpt(Span<byte> response, int offset, DnsResponseCode code)
    {
        response[offset] = 0; // the root name
        BinaryPrimitives.WriteUInt16BigEndian(response[(offset + 1)..], (ushort)DnsRecordType.Opt);
        BinaryPrimitives.WriteUInt16BigEndian(response[(offset + 3)..], MaxUdpPayload);
        // TTL: extended RCODE (the code's upper 8 of 12 bits), version 0, no DO bit.
        BinaryPrimitives.WriteUInt32BigEndian(response[(offset + 5)..], (uint)((int)code >> 4) << 24);
        BinaryPrimitives.WriteUInt16BigEndian(response[(offset + 9)..], 0);
        return offset + OptRecordLength;
    }
}
