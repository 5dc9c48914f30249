using System.Net;
using Weft.Contracts.Stun;
using Weft.Fuzz.Engine;

namespace Weft.Fuzz.Harnesses;

/// <summary>A datagram read as a STUN binding request (the relay's STUN server) and as a response (the agent's netcheck).</summary>
public sealed class StunHarness : Harness
{
    private static readonly byte[] TransactionId = Convert.FromHexString("b7e7a701bc34d686fa87dfae");

    public override string Name => "stun";

    public override int MaxInputBytes => 2048;

    public override IReadOnlyList<byte[]> Tokens =>
    [
        [0x21, 0x12, 0xa4, 0x42], [0x00, 0x01], [0x01, 0x01], [0x00, 0x20], [0x80, 0x20], [0x00, 0x01, 0x00, 0x08], [0x80, 0x28, 0x00, 0x04],
        [0x80, 0x22], [0x00, 0x02], [0xff, 0xff], TransactionId,
    ];

    public override IEnumerable<byte[]> Seeds()
    {
        yield return StunMessage.BindingRequestFor(TransactionId);
        yield return StunMessage.BindingResponseFor(TransactionId, new IPEndPoint(IPAddress.Parse("198.18.0.7"), 41641));
        yield return StunMessage.BindingResponseFor(TransactionId, new IPEndPoint(IPAddress.Parse("2001:db8::7"), 3478));
    }

    public override string Run(byte[] input)
    {
        var request = StunMessage.TryReadBindingRequest(input, out var id);
        // A server answers what it accepted; the answer must read back as the same address.
        if (request == StunError.None)
        {
            var answer = StunMessage.BindingResponseFor(id, new IPEndPoint(IPAddress.Parse("198.18.0.7"), 41641));
            if (StunMessage.TryReadBindingResponse(answer, id, out var mapped) != StunError.None || mapped.Port != 41641)
                throw new InvalidOperationException("our own binding response does not read back");
        }
        var response = StunMessage.TryReadBindingResponse(input, TransactionId, out var address);
        return $"{StunMessage.LooksLikeStun(input)}:{request}:{response}:{(response == StunError.None ? address.AddressFamily : "")}";
    }
}
