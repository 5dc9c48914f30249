using Weft.NodeAgent.Dns;
using static Weft.NodeAgent.Tests.Dns.DnsWire;

namespace Weft.NodeAgent.Tests.Dns;

/// <summary>The strict query parser: what it accepts, and the reason it gives for what it does not.</summary>
public class DnsMessageTests
{
    private static DnsQuery Parse(byte[] message) => DnsMessage.ParseQuery(message, new byte[DnsMessage.MaxNameLength]);

    private static string Rejection(byte[] message) => Assert.Throws<DnsFormatException>(() => { Parse(message); }).Message;

    private static byte[] Label(int length) => [(byte)length, .. Enumerable.Repeat((byte)'a', length)];

    [Fact]
    public void A_plain_query_gives_its_id_flags_and_single_question()
    {
        var query = Parse(Query("Web.acme.weft.internal", Aaaa, id: 0xBEEF));

        Assert.Equal(0xBEEF, query.Id);
        Assert.Equal(DnsMessage.OpcodeQuery, query.Opcode);
        Assert.True(query.RecursionDesired);
        Assert.Equal(Name("Web.acme.weft.internal"), query.Name.ToArray()); // the case as asked
        Assert.Equal(DnsRecordType.Aaaa, query.Type);
        Assert.Equal(DnsMessage.ClassIn, query.Class);
        Assert.False(query.HasEdns);
    }

    [Fact]
    public void An_edns_opt_record_gives_the_payload_size_and_version_and_its_options_are_skipped()
    {
        var query = Parse(Query("web.acme.weft.internal", ednsPayload: 4096, ednsVersion: 0));

        Assert.True(query.HasEdns);
        Assert.Equal(4096, query.EdnsUdpPayloadSize);
        Assert.Equal(0, query.EdnsVersion);
        Assert.Equal(Name("web.acme.weft.internal"), query.Name.ToArray());
    }

    [Fact]
    public void Compression_pointers_back_to_the_question_are_followed()
    {
        // An additional A record owned by a pointer to the question's name (offset 12), and an OPT
        // record owned by a pointer to the question's root label: both are names the parser must follow.
        var question = Question("web.acme.weft.internal");
        var rootOffset = 12 + question.Length - 5;
        byte[] message =
        [
            .. Header(additionals: 2), .. question,
            0xC0, 12, .. UInt16(A), .. UInt16(ClassIn), 0, 0, 0, 60, 0, 4, 100, 64, 0, 2,
            0xC0, (byte)rootOffset, .. UInt16(Opt), .. UInt16(1400), 0, 0, 0, 0, 0, 0,
        ];

        var query = Parse(message);

        Assert.Equal(Name("web.acme.weft.internal"), query.Name.ToArray());
        Assert.True(query.HasEdns);
        Assert.Equal(1400, query.EdnsUdpPayloadSize);
    }

    [Fact]
    public void A_name_of_exactly_255_bytes_is_accepted()
    {
        byte[] name = [.. Label(63), .. Label(63), .. Label(63), .. Label(61), 0];
        Assert.Equal(255, name.Length);

        Assert.Equal(name, Parse([.. Header(), .. name, .. UInt16(A), .. UInt16(ClassIn)]).Name.ToArray());
    }

    /// <summary>Each malformed query, and a fragment of the reason the parser must give.</summary>
    public static TheoryData<string, byte[], string> MalformedQueries()
    {
        var valid = Query("web.acme.weft.internal");
        var question = Question("web.acme.weft.internal");
        return new TheoryData<string, byte[], string>
        {
            { "truncated header", valid[..11], "shorter than the 12-byte header" },
            { "no question", Header(questions: 0), "QDCOUNT is 0" },
            { "two questions", [.. Header(questions: 2), .. question, .. question], "QDCOUNT is 2" },
            { "an answer in a query", [.. Header(answers: 1), .. question], "ANCOUNT is 1" },
            { "a response", [.. Header(flags: 0x8100), .. question], "is a response" },
            { "label too long", [.. Header(), .. Label(64), 0, .. UInt16(A), .. UInt16(ClassIn)], "label of 64 bytes exceeds 63" },
            { "extended label type", [.. Header(), 0x80, 0, .. UInt16(A), .. UInt16(ClassIn)], "label of 128 bytes exceeds 63" },
            { "name too long", [.. Header(), .. Label(63), .. Label(63), .. Label(63), .. Label(62), 0, .. UInt16(A), .. UInt16(ClassIn)], "exceeds 255" },
            { "pointer loop", [.. Header(), 1, (byte)'a', 0xC0, 12, .. UInt16(A), .. UInt16(ClassIn)], "compression pointer loop" },
            { "pointer to itself", [.. Header(), 0xC0, 12, .. UInt16(A), .. UInt16(ClassIn)], "compression pointer loop" },
            { "pointer forward", [.. Header(), 0xC0, 14, 0, .. UInt16(A), .. UInt16(ClassIn)], "compression pointer loop" },
            { "pointer out of range", [.. Header(), 0xC1, 0x00, .. UInt16(A), .. UInt16(ClassIn)], "past the end of the 18-byte message" },
            { "pointer into the header", [.. Header(), 0xC0, 2, .. UInt16(A), .. UInt16(ClassIn)], "points into the header" },
            { "pointer cut in half", [.. Header(), 0xC0], "message ends inside the question" },
            { "ends inside a label", [.. Header(), 3, (byte)'w', (byte)'e'], "message ends inside the question" },
            { "ends before the root label", [.. Header(), 3, (byte)'w', (byte)'e', (byte)'b'], "message ends inside the question" },
            { "ends inside type and class", [.. Header(), .. Name("web.acme.weft.internal"), .. UInt16(A), 0], "message ends inside the question" },
            { "missing additional record", [.. Header(additionals: 1), .. question], "message ends inside additional record 1" },
            { "additional record data cut short", [.. Header(additionals: 1), .. question, 0, .. UInt16(A), .. UInt16(ClassIn), 0, 0, 0, 0, 0, 4, 100, 64], "message ends inside the data of additional record 1" },
            { "two OPT records", [.. Header(additionals: 2), .. question, .. OptRecord(), .. OptRecord()], "more than one OPT record" },
            { "OPT not owned by the root", [.. Header(additionals: 1), .. question, 0xC0, 12, .. UInt16(Opt), .. UInt16(1232), 0, 0, 0, 0, 0, 0], "not owned by the root" },
            { "torn EDNS option", [.. Header(additionals: 1), .. question, .. OptRecordWithData([0, 10, 0, 8, 1, 2, 3])], "overruns the OPT record" },
            { "trailing garbage", [.. valid, 0xFF], "1 trailing byte after the last record" },
        };
    }

    private static byte[] OptRecordWithData(byte[] data) => [0, .. UInt16(Opt), .. UInt16(1232), 0, 0, 0, 0, .. UInt16((ushort)data.Length), .. data];

    [Theory]
    [MemberData(nameof(MalformedQueries))]
    public void Malformed_queries_are_rejected_with_the_reason(string what, byte[] message, string reason)
    {
        var rejection = Rejection(message);
        Assert.True(rejection.Contains(reason, StringComparison.Ordinal), $"{what}: \"{rejection}\" does not say \"{reason}\"");
    }

    [Fact]
    public void Trailing_bytes_are_rejected_rather_than_ignored()
    {
        // A design choice: BIND answers trailing garbage with FORMERR too. What a parser ignores, two
        // parsers can disagree about.
        Assert.Contains("trailing", Rejection([.. Query("web.acme.weft.internal", ednsPayload: 1232), 0, 0]));
    }
}
