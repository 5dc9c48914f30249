using System.Net;
using Weft.Contracts.Stun;

namespace Weft.Contracts.Tests.Stun;

/// <summary>STUN binding messages against RFC 5769's test vectors, and every malformed shape refused with its reason.</summary>
public class StunMessageTests
{
    private static readonly byte[] TransactionId = Convert.FromHexString("b7e7a701bc34d686fa87dfae");

    /// <summary>RFC 5769 §2.2: an IPv4 binding response with SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT.</summary>
    private static readonly byte[] Rfc5769Ipv4Response = Convert.FromHexString(
        "0101003c2112a442b7e7a701bc34d686fa87dfae" +
        "8022000b7465737420766563746f7220" +
        "002000080001a147e112a643" +
        "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7" +
        "80280004c07d4c96");

    [Fact]
    public void The_rfc_5769_ipv4_response_reads_as_192_0_2_1_port_32853()
    {
        Assert.Equal(StunError.None, StunMessage.TryReadBindingResponse(Rfc5769Ipv4Response, TransactionId, out var mapped));
        Assert.Equal(new IPEndPoint(IPAddress.Parse("192.0.2.1"), 32853), mapped);
    }

    [Fact]
    public void An_ipv6_response_xors_its_address_with_the_cookie_and_transaction_id_as_rfc_5769_shows()
    {
        var response = StunMessage.BindingResponseFor(TransactionId, new IPEndPoint(IPAddress.Parse("2001:db8:1234:5678:11:2233:4455:6677"), 32853));

        // RFC 5769 §2.3's XOR-MAPPED-ADDRESS attribute, byte for byte.
        Assert.Equal("002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9", Convert.ToHexStringLower(response.AsSpan(20, 24)));
        Assert.Equal(StunError.None, StunMessage.TryReadBindingResponse(response, TransactionId, out var mapped));
        Assert.Equal(new IPEndPoint(IPAddress.Parse("2001:db8:1234:5678:11:2233:4455:6677"), 32853), mapped);
    }

    [Fact]
    public void A_request_and_its_response_round_trip_with_fingerprints()
    {
        var id = StunMessage.NewTransactionId();
        var request = StunMessage.BindingRequestFor(id);
        Assert.True(StunMessage.LooksLikeStun(request));
        Assert.Equal(StunError.None, StunMessage.TryReadBindingRequest(request, out var readId));
        Assert.Equal(id, readId);

        var response = StunMessage.BindingResponseFor(readId, new IPEndPoint(IPAddress.Parse("::ffff:198.18.0.7"), 41641));
        Assert.Equal(40, response.Length); // an IPv4 answer: header (20), XOR-MAPPED-ADDRESS (12), FINGERPRINT (8)
        Assert.Equal(StunError.None, StunMessage.TryReadBindingResponse(response, id, out var mapped));
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.18.0.7"), 41641), mapped);
        Assert.Equal(StunError.WrongType, StunMessage.TryReadBindingRequest(response, out _));
        Assert.Equal(StunError.WrongType, StunMessage.TryReadBindingResponse(request, id, out _));
        Assert.Equal(StunError.UnexpectedTransaction, StunMessage.TryReadBindingResponse(response, StunMessage.NewTransactionId(), out _));
    }

    [Fact]
    public void Malformed_datagrams_are_refused_with_their_reason()
    {
        var request = StunMessage.BindingRequestFor(TransactionId);
        byte[] Changed(Action<byte[]> change)
        {
            var copy = (byte[])request.Clone();
            change(copy);
            return copy;
        }

        Assert.Equal(StunError.NotStun, StunMessage.TryReadBindingRequest([], out _));
        Assert.Equal(StunError.NotStun, StunMessage.TryReadBindingRequest(request.AsSpan(0, 19), out _));
        Assert.Equal(StunError.NotStun, StunMessage.TryReadBindingRequest(Changed(m => m[4] ^= 1), out _));       // magic cookie
        Assert.Equal(StunError.NotStun, StunMessage.TryReadBindingRequest(Changed(m => m[0] |= 0x80), out _));    // top bits
        Assert.Equal(StunError.NotStun, StunMessage.TryReadBindingRequest(request.AsSpan(0, request.Length - 4), out _)); // length disagrees
        Assert.Equal(StunError.BadFingerprint, StunMessage.TryReadBindingRequest(Changed(m => m[^1] ^= 1), out _));
        Assert.Equal(StunError.BadFingerprint, StunMessage.TryReadBindingRequest(Changed(m => m[25] ^= 1), out _)); // SOFTWARE changed under the fingerprint
        Assert.Equal(StunError.MalformedAttribute, StunMessage.TryReadBindingRequest(Changed(m => m[23] = 200), out _)); // SOFTWARE's length runs past the end
        Assert.Equal(StunError.UnknownRequiredAttribute, StunMessage.TryReadBindingRequest(Changed(m => m[20] = 0x7f), out _)); // SOFTWARE's type made 0x7f22
        Assert.Equal(StunError.TooLarge, StunMessage.TryReadBindingRequest(new byte[StunMessage.MaxLength + 4], out _));
        // A success response that names no address (only SOFTWARE).
        var noAddress = Convert.FromHexString("010100082112a442b7e7a701bc34d686fa87dfae" + "8022000474657374");
        Assert.Equal(StunError.NoMappedAddress, StunMessage.TryReadBindingResponse(noAddress, TransactionId, out _));
    }
}
