using System.Buffers.Binary;
using FsCheck.Xunit;
using Weft.NodeAgent.Dns;

namespace Weft.NodeAgent.Tests.Dns;

/// <summary>Whatever arrives on port 53, the resolver neither throws nor sends anything malformed.</summary>
public class MagicDnsResolverProperties
{
    /// <summary>Nothing for a datagram without a query header; otherwise a response that reads cleanly and carries the query's ID.</summary>
    private static bool AnswersSafely(byte[] query)
    {
        var response = new byte[DnsMessage.MaxUdpPayload];
        var length = MagicDnsResolver.Answer(query, response, MagicDnsResolverTests.Names);
        if (query.Length < DnsMessage.HeaderLength || (query[2] & 0x80) != 0) return length == 0;
        if (length == 0) return false;
        var parsed = DnsTestResponse.Read(response.AsSpan(0, length)); // throws if malformed
        return parsed.IsResponse && parsed.Id == BinaryPrimitives.ReadUInt16BigEndian(query);
    }

    [Property(MaxTest = 1000)]
    public bool Random_bytes_never_throw_and_any_answer_is_well_formed_with_the_queries_id(byte[] bytes) =>
        AnswersSafely(bytes ?? []);

    [Property(MaxTest = 1000)]
    public bool Damaged_real_queries_never_throw_and_any_answer_is_well_formed(byte[] damage, byte length, bool edns)
    {
        // Random bytes rarely get past QDCOUNT; a real query with a few bytes changed (and perhaps cut
        // short) reaches the name, pointer and EDNS paths.
        var query = DnsWire.Query("web.acme.weft.internal", DnsWire.A, ednsPayload: edns ? (ushort)1232 : null);
        damage ??= [];
        for (var i = 0; i + 1 < damage.Length; i += 2) query[damage[i] % query.Length] ^= damage[i + 1];
        return AnswersSafely(query[..Math.Min(query.Length, query.Length - length % 8)]);
    }
}
