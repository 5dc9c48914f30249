using System.Net;
using Weft.NodeAgent.Dns;
using static Weft.NodeAgent.Tests.Dns.DnsWire;

namespace Weft.NodeAgent.Tests.Dns;

/// <summary>What MagicDNS answers: the tailnet's names authoritatively, everything else refused.</summary>
public class MagicDnsResolverTests
{
    public const string Zone = "acme.weft.internal";
    public const string WebV4 = "100.64.0.2", WebV6 = "fd7a:115c:a1e0::6440:2";

    public static readonly DnsNameTable Names = new(
    [
        new DnsHost("web.acme.weft.internal", [IPAddress.Parse(WebV4), IPAddress.Parse(WebV6)]),
        new DnsHost("laptop.acme.weft.internal", [IPAddress.Parse("100.64.0.3")]),
        new DnsHost("db.prod.acme.weft.internal", [IPAddress.Parse("100.64.0.4"), IPAddress.Parse("fd7a:115c:a1e0::6440:4")]),
        // 40 addresses: 40 A records do not fit in 512 bytes.
        new DnsHost("big.acme.weft.internal", [.. Enumerable.Range(1, 40).Select(i => IPAddress.Parse($"100.64.1.{i}"))]),
    ], [Zone]);

    private static DnsTestResponse Ask(byte[] query, DnsNameTable? names = null)
    {
        var response = new byte[DnsMessage.MaxUdpPayload];
        var length = MagicDnsResolver.Answer(query, response, names ?? Names);
        Assert.True(length > 0, "expected an answer, got none");
        var parsed = DnsTestResponse.Read(response.AsSpan(0, length));
        Assert.True(parsed.IsResponse);
        Assert.False(parsed.RecursionAvailable); // no recursion is offered
        return parsed;
    }

    /// <summary>An authoritative answer to the question as asked, with the given code and addresses.</summary>
    private static DnsTestResponse AskAuthoritative(byte[] query, DnsResponseCode code, params string[] addresses)
    {
        var response = Ask(query);
        Assert.Equal(code, response.Code);
        Assert.True(response.Authoritative);
        Assert.False(response.Truncated);
        Assert.Equal(addresses.Select(IPAddress.Parse), response.Addresses);
        return response;
    }

    [Fact]
    public void A_query_for_a_device_answers_its_ipv4_address_with_a_600_second_ttl()
    {
        var response = AskAuthoritative(Query("web.acme.weft.internal", A, id: 0x4242), DnsResponseCode.NoError, WebV4);

        Assert.Equal(0x4242, response.Id);
        Assert.Equal(("web.acme.weft.internal.", A, ClassIn), Assert.Single(response.Questions));
        var answer = Assert.Single(response.Answers);
        Assert.Equal(("web.acme.weft.internal.", A, ClassIn, 600u), (answer.Name, answer.Type, answer.Class, answer.Ttl));
        Assert.Empty(response.Authorities);
        Assert.Empty(response.Additionals);
    }

    [Fact]
    public void An_aaaa_query_answers_the_devices_ipv6_address()
    {
        var answer = Assert.Single(AskAuthoritative(Query("web.acme.weft.internal", Aaaa), DnsResponseCode.NoError, WebV6).Answers);
        Assert.Equal((Aaaa, 600u), (answer.Type, answer.Ttl));
    }

    [Fact]
    public void An_any_query_answers_both_families() =>
        AskAuthoritative(Query("web.acme.weft.internal", Any), DnsResponseCode.NoError, WebV4, WebV6);

    [Theory]
    [InlineData("laptop.acme.weft.internal", Aaaa)] // a device with no IPv6 address
    [InlineData("web.acme.weft.internal", Txt)]
    [InlineData("web.acme.weft.internal", Mx)]
    [InlineData("web.acme.weft.internal", Ptr)]
    public void A_known_name_without_records_of_the_type_asked_is_nodata(string name, ushort type) =>
        Assert.Empty(AskAuthoritative(Query(name, type), DnsResponseCode.NoError).Answers);

    [Theory]
    [InlineData("nope.acme.weft.internal")]
    [InlineData("www.web.acme.weft.internal")]
    [InlineData("db.staging.acme.weft.internal")]
    public void Unknown_names_under_the_suffix_are_nxdomain(string name)
    {
        AskAuthoritative(Query(name, A), DnsResponseCode.NameError);
        AskAuthoritative(Query(name, Aaaa), DnsResponseCode.NameError);
    }

    [Theory]
    [InlineData("acme.weft.internal")]      // the zone apex
    [InlineData("prod.acme.weft.internal")] // on the way to db.prod: it exists, with nothing of its own
    public void The_zone_and_the_names_above_a_device_exist_without_records(string name) =>
        AskAuthoritative(Query(name, A), DnsResponseCode.NoError);

    [Theory]
    [InlineData("example.com")]
    [InlineData("weft.internal")]              // above our zone
    [InlineData("web.other.weft.internal")]    // another tailnet's zone
    [InlineData(".")]
    public void Names_outside_the_zones_are_refused_and_not_claimed(string name)
    {
        var response = Ask(Query(name, A));

        Assert.Equal(DnsResponseCode.Refused, response.Code);
        Assert.False(response.Authoritative);
        Assert.Empty(response.Answers);
        Assert.Single(response.Questions);
    }

    [Fact]
    public void Ptr_for_a_devices_ipv4_address_answers_its_name()
    {
        var response = AskAuthoritative(ReverseQuery(WebV4), DnsResponseCode.NoError);

        var answer = Assert.Single(response.Answers);
        Assert.Equal(("2.0.64.100.in-addr.arpa.", Ptr, 600u), (answer.Name, answer.Type, answer.Ttl));
        Assert.Equal("web.acme.weft.internal.", answer.Target);
    }

    [Fact]
    public void Ptr_for_a_devices_ipv6_address_answers_its_name()
    {
        var response = AskAuthoritative(ReverseQuery(WebV6), DnsResponseCode.NoError);

        var answer = Assert.Single(response.Answers);
        Assert.Equal("2.0.0.0.0.4.4.6.0.0.0.0.0.0.0.0.0.0.0.0.0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa.", answer.Name);
        Assert.Equal("web.acme.weft.internal.", answer.Target);
    }

    [Theory]
    [InlineData("100.64.9.9")]
    [InlineData("100.127.255.255")]
    [InlineData("fd7a:115c:a1e0::9")]
    public void Unknown_reverse_names_in_the_tailnet_ranges_are_nxdomain(string address) =>
        AskAuthoritative(ReverseQuery(address), DnsResponseCode.NameError);

    [Theory]
    [InlineData("10.0.0.1")]
    [InlineData("100.63.255.255")] // just below 100.64.0.0/10
    [InlineData("100.128.0.0")]    // just above it
    [InlineData("2001:db8::1")]
    public void Reverse_names_outside_the_tailnet_ranges_are_refused(string address) =>
        Assert.Equal(DnsResponseCode.Refused, Ask(ReverseQuery(address)).Code);

    [Fact]
    public void The_partial_reverse_name_above_a_device_exists()
    {
        // 0.64.100.in-addr.arpa sits between the zone 64.100.in-addr.arpa and 2.0.64.100.in-addr.arpa.
        AskAuthoritative(Query("0.64.100.in-addr.arpa", Ptr), DnsResponseCode.NoError);
    }

    [Fact]
    public void Names_match_in_any_case_and_the_question_comes_back_as_asked()
    {
        var response = AskAuthoritative(Query("WeB.AcMe.WEFT.internal", A), DnsResponseCode.NoError, WebV4);

        // Resolvers that randomise the case of their queries (0x20 encoding) check the echo.
        Assert.Equal("WeB.AcMe.WEFT.internal.", response.Questions[0].Name);
        Assert.Equal(WebV4, Ask(Query("web.acme.weft.internal.", A)).Addresses.Single().ToString());
    }

    [Fact]
    public void A_trailing_dot_and_upper_case_in_the_table_make_no_difference()
    {
        var names = new DnsNameTable([new DnsHost("Web.ACME.weft.internal.", [IPAddress.Parse(WebV4)])], ["ACME.weft.internal."]);

        Assert.Equal(WebV4, Ask(Query("web.acme.weft.internal", A), names).Addresses.Single().ToString());
        Assert.Equal(DnsResponseCode.NameError, Ask(Query("nope.acme.weft.internal", A), names).Code);
        Assert.Equal("web.acme.weft.internal.", Ask(ReverseQuery(WebV4), names).Answers.Single().Target);
    }

    [Fact]
    public void A_dot_inside_a_label_does_not_split_it()
    {
        // One label "db.prod", then acme.weft.internal: a different name from db.prod.acme.weft.internal.
        byte[] name = [7, .. "db.prod"u8, .. Name(Zone)];

        AskAuthoritative([.. Header(), .. name, .. UInt16(A), .. UInt16(ClassIn)], DnsResponseCode.NameError);
    }

    [Fact]
    public void An_answer_too_big_for_512_bytes_is_truncated_with_no_records()
    {
        var response = Ask(Query("big.acme.weft.internal", A));

        Assert.Equal(DnsResponseCode.NoError, response.Code);
        Assert.True(response.Truncated);
        Assert.Empty(response.Answers);
        Assert.Single(response.Questions);
    }

    [Fact]
    public void An_edns_client_gets_answers_up_to_the_size_it_advertised()
    {
        var roomy = Ask(Query("big.acme.weft.internal", A, ednsPayload: 1232));
        Assert.False(roomy.Truncated);
        Assert.Equal(40, roomy.Answers.Count);

        Assert.True(Ask(Query("big.acme.weft.internal", A, ednsPayload: 600)).Truncated);
        // Below 512 counts as 512 (RFC 6891 6.2.5): a small answer still fits.
        Assert.False(Ask(Query("web.acme.weft.internal", A, ednsPayload: 100)).Truncated);
    }

    [Fact]
    public void An_edns_query_gets_our_opt_record_back_and_a_plain_one_does_not()
    {
        var opt = Ask(Query("web.acme.weft.internal", A, ednsPayload: 4096)).Opt;

        Assert.NotNull(opt);
        Assert.Equal(".", opt.Name);
        Assert.Equal(DnsMessage.MaxUdpPayload, opt.Class); // our payload size
        Assert.Equal(0u, opt.Ttl);                          // no extended code, version 0
        Assert.Null(Ask(Query("web.acme.weft.internal", A)).Opt);
        Assert.NotNull(Ask(Query("example.com", A, ednsPayload: 1232)).Opt); // a refusal too
    }

    [Fact]
    public void An_edns_version_above_zero_is_badvers()
    {
        var response = Ask(Query("web.acme.weft.internal", A, ednsPayload: 1232, ednsVersion: 1));

        Assert.Equal(DnsResponseCode.BadVersion, response.Code);
        Assert.Empty(response.Answers);
    }

    [Theory]
    [InlineData(1)] // IQUERY, obsolete
    [InlineData(2)] // STATUS
    [InlineData(4)] // NOTIFY
    [InlineData(5)] // UPDATE
    public void Opcodes_other_than_query_are_notimp(int opcode)
    {
        var response = Ask(Query("web.acme.weft.internal", A, id: 7, opcode: opcode));

        Assert.Equal(DnsResponseCode.NotImplemented, response.Code);
        Assert.Equal((7, opcode), ((int)response.Id, response.Opcode));
        Assert.Empty(response.Questions);
    }

    [Theory]
    [InlineData(ClassChaos)] // version.bind and friends
    [InlineData(ClassAny)]
    public void Classes_other_than_in_are_refused(ushort @class) =>
        Assert.Equal(DnsResponseCode.Refused, Ask(Query("web.acme.weft.internal", A, @class: @class)).Code);

    [Fact]
    public void Recursion_desired_is_copied_and_recursion_is_never_available()
    {
        Assert.True(Ask(Query("web.acme.weft.internal", A, recursionDesired: true)).RecursionDesired);
        Assert.False(Ask(Query("web.acme.weft.internal", A, recursionDesired: false)).RecursionDesired);
    }

    /// <summary>The parser's malformed queries that still have a query's header to answer.</summary>
    public static TheoryData<string, byte[]> MalformedWithHeader()
    {
        var rows = new TheoryData<string, byte[]>();
        foreach (var row in DnsMessageTests.MalformedQueries())
        {
            var (what, query) = ((string)row[0], (byte[])row[1]);
            if (query.Length >= 12 && (query[2] & 0x80) == 0) rows.Add(what, query);
        }
        return rows;
    }

    [Theory]
    [MemberData(nameof(MalformedWithHeader))]
    public void Malformed_queries_with_a_readable_header_are_formerr_with_their_id(string what, byte[] query)
    {
        var response = Ask(query);

        Assert.True(response.Code == DnsResponseCode.FormatError, what);
        Assert.Equal(0x1234, response.Id);
        Assert.Empty(response.Questions);
    }

    [Fact]
    public void Well_formed_queries_are_answered_without_allocating()
    {
        byte[][] queries =
        [
            Query("web.acme.weft.internal", A, ednsPayload: 1232), Query("WEB.acme.weft.internal", Aaaa),
            ReverseQuery(WebV4), Query("nope.acme.weft.internal"), Query("example.com"), Query("big.acme.weft.internal"),
        ];
        var response = new byte[DnsMessage.MaxUdpPayload];
        foreach (var query in queries) MagicDnsResolver.Answer(query, response, Names); // JIT first

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var round = 0; round < 100; round++)
            foreach (var query in queries) MagicDnsResolver.Answer(query, response, Names);

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Datagrams_without_a_header_and_responses_get_nothing()
    {
        var buffer = new byte[DnsMessage.MaxUdpPayload];

        Assert.Equal(0, MagicDnsResolver.Answer([], buffer, Names));
        Assert.Equal(0, MagicDnsResolver.Answer(Query("web.acme.weft.internal")[..11], buffer, Names));
        byte[] response = [.. Header(flags: 0x8400), .. Question("web.acme.weft.internal")];
        Assert.Equal(0, MagicDnsResolver.Answer(response, buffer, Names));
    }
}
