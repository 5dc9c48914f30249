using System.Buffers.Binary;

namespace Weft.NodeAgent.Dns;

/// <summary>How a query was dealt with, for the server's counters.</summary>
internal enum MagicDnsOutcome
{
    /// <summary>Nothing sent: shorter than a header, or a response.</summary>
    Dropped,
    /// <summary>An authoritative answer: records, NODATA or NXDOMAIN (truncated or not).</summary>
    Answered,
    /// <summary>REFUSED: a name or class outside what we serve.</summary>
    Refused,
    /// <summary>FORMERR.</summary>
    Malformed,
    /// <summary>NOTIMP (an opcode other than QUERY) or BADVERS (EDNS version above 0).</summary>
    Unsupported,
}

/// <summary>
/// MagicDNS's answers, as a pure function of the query bytes and the name table: the tailnet's names
/// answer authoritatively, everything else is refused (no recursion is offered in this step, so RA is
/// never set).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>A / AAAA (or ANY) for a device: its addresses of that family.</item>
/// <item>An existing name without records of the type asked: NOERROR with no answers (NODATA). No SOA
/// goes in the authority section: our clients are stub resolvers talking to us directly, and RFC 2308
/// only uses it to bound negative caching.</item>
/// <item>A name inside our zones that does not exist: NXDOMAIN. A name outside them: REFUSED.</item>
/// <item>PTR for an address a device holds: its name. Other reverse names in the tailnet's ranges: NXDOMAIN.</item>
/// <item>A class other than IN: REFUSED rather than NOTIMP. The class is understood; we simply hold no
/// data in it, the same policy answer as for a name outside our zones.</item>
/// <item>A malformed query with a readable header: FORMERR, header only. Fewer than 12 bytes, or a
/// response: nothing (there is no ID to answer, or answering could start a loop between two servers).</item>
/// <item>Any opcode but QUERY: NOTIMP, header only.</item>
/// </list>
/// AA is set on answers from our zones only: a refusal or an error is not authoritative for anything.
/// </remarks>
public static class MagicDnsResolver
{
    /// <summary>
    /// Tailscale's MagicDNS answers with a 600 s TTL: resolvers cache for minutes, and a device that
    /// changes its name or addresses is found again within ten.
    /// </summary>
    public const uint TtlSeconds = 600;

    /// <summary>Flags a response copies from its query: opcode, RD and CD.</summary>
    private const ushort EchoedFlags = DnsMessage.OpcodeMask | DnsMessage.FlagRecursionDesired | DnsMessage.FlagCheckingDisabled;

    /// <summary>
    /// Writes the response to <paramref name="query"/> into <paramref name="response"/> (at least 512
    /// bytes) and returns its length, or 0 if nothing should be sent. Never throws on any input bytes.
    /// </summary>
    public static int Answer(ReadOnlySpan<byte> query, Span<byte> response, DnsNameTable names) => Answer(query, response, names, out _);

    internal static int Answer(ReadOnlySpan<byte> query, Span<byte> response, DnsNameTable names, out MagicDnsOutcome outcome)
    {
        ArgumentNullException.ThrowIfNull(names);
        if (response.Length < DnsMessage.ClassicUdpPayload)
            throw new ArgumentException($"the response buffer must hold {DnsMessage.ClassicUdpPayload} bytes", nameof(response));

        if (query.Length < DnsMessage.HeaderLength || (query[2] & (DnsMessage.FlagResponse >> 8)) != 0)
        {
            outcome = MagicDnsOutcome.Dropped;
            return 0;
        }
        var id = BinaryPrimitives.ReadUInt16BigEndian(query);
        var echoed = (ushort)(BinaryPrimitives.ReadUInt16BigEndian(query[2..]) & EchoedFlags);
        if ((echoed & DnsMessage.OpcodeMask) >> 11 != DnsMessage.OpcodeQuery)
        {
            outcome = MagicDnsOutcome.Unsupported;
            return HeaderOnly(response, id, echoed, DnsResponseCode.NotImplemented);
        }

        Span<byte> nameBuffer = stackalloc byte[DnsMessage.MaxNameLength];
        scoped DnsQuery question;
        try
        {
            question = DnsMessage.ParseQuery(query, nameBuffer);
        }
        catch (DnsFormatException)
        {
            outcome = MagicDnsOutcome.Malformed;
            return HeaderOnly(response, id, echoed, DnsResponseCode.FormatError);
        }

        var code = DnsResponseCode.NoError;
        var authoritative = false;
        var truncated = false;
        var answers = 0;
        var offset = DnsMessage.WriteQuestion(response, question.Name, question.Type, question.Class);
        if (question.HasEdns && question.EdnsVersion != 0)
        {
            code = DnsResponseCode.BadVersion;
            outcome = MagicDnsOutcome.Unsupported;
        }
        else if (question.Class != DnsMessage.ClassIn)
        {
            code = DnsResponseCode.Refused;
            outcome = MagicDnsOutcome.Refused;
        }
        else
        {
            switch (names.Find(question.Name, out var entry))
            {
                case DnsNameStatus.NotOurs:
                    code = DnsResponseCode.Refused;
                    outcome = MagicDnsOutcome.Refused;
                    break;
                case DnsNameStatus.NoSuchName:
                    code = DnsResponseCode.NameError;
                    authoritative = true;
                    outcome = MagicDnsOutcome.Answered;
                    break;
                default:
                    authoritative = true;
                    outcome = MagicDnsOutcome.Answered;
                    // RFC 6891 6.2.5: payload sizes below 512 are treated as 512.
                    var limit = question.HasEdns ? Math.Clamp((int)question.EdnsUdpPayloadSize, DnsMessage.ClassicUdpPayload, response.Length) : DnsMessage.ClassicUdpPayload;
                    var end = limit - (question.HasEdns ? DnsMessage.OptRecordLength : 0);
                    var afterQuestion = offset;
                    if (!TryAppendAnswers(response, ref offset, end, question.Type, entry, ref answers))
                    {
                        // RFC 2181 9: rather than a partial set, send none and let the client retry over TCP (or not).
                        truncated = true;
                        answers = 0;
                        offset = afterQuestion;
                    }
                    break;
            }
        }

        if (question.HasEdns) offset = DnsMessage.WriteOpt(response, offset, code);
        var flags = (ushort)(DnsMessage.FlagResponse | echoed | ((int)code & 0xF)
            | (authoritative ? DnsMessage.FlagAuthoritative : 0) | (truncated ? DnsMessage.FlagTruncated : 0));
        DnsMessage.WriteHeader(response, id, flags, questions: 1, answers, additionals: question.HasEdns ? 1 : 0);
        return offset;
    }

    private static bool TryAppendAnswers(Span<byte> response, ref int offset, int end, DnsRecordType type, DnsNameEntry entry, ref int answers)
    {
        var any = type == DnsRecordType.Any;
        return (!(any || type == DnsRecordType.A) || TryAppend(response, ref offset, end, DnsRecordType.A, entry.Ipv4, ref answers))
            && (!(any || type == DnsRecordType.Aaaa) || TryAppend(response, ref offset, end, DnsRecordType.Aaaa, entry.Ipv6, ref answers))
            && (!(any || type == DnsRecordType.Ptr) || TryAppend(response, ref offset, end, DnsRecordType.Ptr, entry.Pointers, ref answers));
    }

    private static bool TryAppend(Span<byte> response, ref int offset, int end, DnsRecordType type, byte[][] records, ref int answers)
    {
        foreach (var data in records)
        {
            if (offset + DnsMessage.AnswerOverhead + data.Length > end) return false;
            offset = DnsMessage.WriteAnswer(response, offset, type, TtlSeconds, data);
            answers++;
        }
        return true;
    }

    private static int HeaderOnly(Span<byte> response, ushort id, ushort echoed, DnsResponseCode code)
    {
        DnsMessage.WriteHeader(response, id, (ushort)(DnsMessage.FlagResponse | echoed | (ushort)code), questions: 0, answers: 0, additionals: 0);
        return DnsMessage.HeaderLength;
    }
}
