using System.Text.Json;
using Weft.Contracts.Crypto;
using Weft.Contracts.Disco;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;
using Weft.Contracts.Stun;
using Weft.Fuzz.Engine;

namespace Weft.Fuzz.Harnesses;

/// <summary>
/// What a relay and the disco path read from strangers: relay frames off a stream, login bodies,
/// access answers from a coordinator, tickets, disco packets (opened and bare bodies), and classic STUN requests. Each must end in a
/// value or a named refusal, never another exception.
/// </summary>
public sealed class RelayHarness : Harness
{
    private static readonly NSec.Cryptography.Key Issuer = RelayTicket.SigningKey(new byte[32]);
    private static readonly Curve25519PrivateKey Alice = Curve25519PrivateKey.FromBytes(Enumerable.Repeat((byte)7, 32).ToArray());
    private static readonly Curve25519PrivateKey Bob = Curve25519PrivateKey.FromBytes(Enumerable.Repeat((byte)9, 32).ToArray());
    private static readonly SealedBox AliceToBob = SealedBox.Between(Alice, Bob.PublicKey)!;
    private static readonly SealedBox BobToAlice = SealedBox.Between(Bob, Alice.PublicKey)!;

    public override string Name => "relay";

    public override int MaxInputBytes => 4096;

    public override IReadOnlyList<byte[]> Tokens =>
    [
        [0x04, 0, 0, 0], [0x02, 0, 0, 0x20], [0x0a], [0x10, 0, 0, 0, 0], [0x12, 0, 0, 0, 8], [0xff, 0xff, 0xff, 0xff],
        [.. DiscoPacket.Magic], [1], "{\"ticket\":"u8.ToArray(), "\"meshKey\":"u8.ToArray(),
    ];

    public override IEnumerable<byte[]> Seeds()
    {
        yield return [.. RelayFrame.Build(RelayFrameType.SendPacket, Bob.PublicKey, "hello"u8), .. RelayFrame.Build(RelayFrameType.Ping, new byte[8])];
        yield return RelayLoginJson.Serialize(new ClientInfo { Ticket = [1, 2, 3] });
        yield return JsonSerializer.SerializeToUtf8Bytes(new RelayAccessAnswer { Allowed = [true, null] });
        yield return new RelayTicket(Alice.PublicKey, "tn_fuzz", DateTimeOffset.FromUnixTimeSeconds(4_000_000_000)).Sign(Issuer);
        yield return DiscoPacket.Seal(new DiscoPing(new byte[12], Alice.PublicKey, 16), Alice.PublicKey, AliceToBob);
        yield return DiscoPacket.Encode(new DiscoCallMeMaybe([System.Net.IPEndPoint.Parse("198.18.0.1:41641")]));
    }

    public override string Run(byte[] input)
    {
        var frames = new List<string>();
        try
        {
            var reader = new RelayFrameReader(new MemoryStream(input));
            while (reader.ReadAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult() is { } frame) frames.Add($"{frame.Type}/{frame.Payload.Length}");
        }
        catch (RelayProtocolException e)
        {
            frames.Add(e.Reason);
        }

        string login;
        try { login = RelayLoginJson.Parse<ClientInfo>(input).Version.ToString(); }
        catch (RelayProtocolException e) { login = e.Reason; }

        // What a coordinator answers a separate relay's access check, for a query of two tickets.
        string access;
        try { access = string.Join('/', RelayAccessAnswer.Parse(input, 2).Allowed); }
        catch (FormatException e) { access = e.Message.Split(':')[0]; }

        var ticket = RelayTicket.Verify(input, [Issuer.PublicKey], DateTimeOffset.FromUnixTimeSeconds(1_800_000_000), out var refusal);
        // A ticket that verifies must read back into the very bytes that were signed.
        if (ticket is not null && !ticket.Sign(Issuer).AsSpan().SequenceEqual(input))
            throw new InvalidOperationException("a verified ticket does not re-sign to itself");

        var opened = DiscoPacket.Open(input, BobToAlice);
        var decoded = DiscoPacket.Decode(input);
        if (decoded is not null && DiscoPacket.Decode(DiscoPacket.Encode(decoded)) is null)
            throw new InvalidOperationException("a decoded disco message does not survive re-encoding");
        var classic = StunMessage.TryReadClassicBindingRequest(input, out _);
        return $"{string.Join(',', frames)}|{login}|{access}|{refusal}|{opened?.GetType().Name}|{decoded?.GetType().Name}|{classic}";
    }
}
