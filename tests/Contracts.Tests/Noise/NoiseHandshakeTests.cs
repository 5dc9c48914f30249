using NSec.Cryptography;
using Weft.Contracts.Keys;
using Weft.Contracts.Noise;

namespace Weft.Contracts.Tests.Noise;

/// <summary>The cacophony vectors (mcginty/snow tests/vectors/cacophony.txt) for both patterns Weft speaks.</summary>
public class NoiseHandshakeTests
{
    public sealed record Vector(
        NoisePattern Pattern, string Prologue, string? Psk, string InitStatic, string InitEphemeral, string RespStatic, string RespEphemeral,
        string HandshakeHash, (string Payload, string Ciphertext)[] Messages);

    private const string Prologue = "4a6f686e2047616c74"; // "John Galt"
    private const string Psk = "54686973206973206d7920417573747269616e20706572737065637469766521";
    private const string InitStatic = "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1";
    private const string InitEphemeral = "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a";
    private const string RespStatic = "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893";
    private const string RespEphemeral = "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b";

    public static TheoryData<Vector> Vectors => new(
        new Vector(NoisePattern.IK, Prologue, null, InitStatic, InitEphemeral, RespStatic, RespEphemeral,
            "48f3cb8bc9319da4ba1e9933991b1c4ed4034f1f126a76d3a1fbcfd7f94248d4",
            [
                ("4c756477696720766f6e204d69736573", "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79440b03ddc7aac5123d06a1b23b71670e32e76c28239a7ca4ac8f784de7e44c1adbfc6e83fef7352a58d9d56157400c0a737b1d171ce368229c7b752ac25b8faf4eca690f6d896f543be02c996ab2b86b76"),
                ("4d757272617920526f746862617264", "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843d9b5a8927f0ac9655ef76833bc7e5561f42e691ac8404efd6fbd6308b6a27c"),
                ("462e20412e20486179656b", "2c256ed08fcd08c2980f954ee4beaccb61c9581340f5dd2fd1cf3b"),
                ("4361726c204d656e676572", "d6033f70eee20945c7c9dba304e397ee3b284ff5e00fd9efb095d3"),
                ("4a65616e2d426170746973746520536179", "a9c068ca5d8babf72560652d8e851adbfac35c8a66e810d560863173e96adf4cfe"),
                ("457567656e2042f6686d20766f6e2042617765726b", "2a09d8f459e5927e40fdd2eddc99bdafb04e13a26f145cb5cfe9e6ba34c94331ebc17d5156"),
            ]),
        new Vector(NoisePattern.IKpsk2, Prologue, Psk, InitStatic, InitEphemeral, RespStatic, RespEphemeral,
            "f5191b875290abcd41347ac3622d9679688a7e980229cb937ef748336cfde0e5",
            [
                ("4c756477696720766f6e204d69736573", "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944001e21de9f98ddd8e2ad57527207feb56253c9c94a9e496782ecfcb2a75fbcaf1b52948cc48daefe660c62119ab5000980c84831215f2441eba616548e832985464cf17e51ee93109008399a21f7e13f"),
                ("4d757272617920526f746862617264", "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843cb765f2caef0751b8f007572dab0322217755c0632f365717edbf34d33e87a"),
                ("462e20412e20486179656b", "8153ca9833bc3c1b91a7e66e5f4d4f5b59bf9e64c2f20d15f0bba7"),
                ("4361726c204d656e676572", "07af0c9c86e1b4e80f36b04ff7688d51141af3debd0332f0a705ef"),
                ("4a65616e2d426170746973746520536179", "6ab1467c0448cc78394494abaaf23afce0e234315d6e2624dcbfa8a21c1c4d073d"),
                ("457567656e2042f6686d20766f6e2042617765726b", "dfc346c0d2296ae6cf1acf6f12b8456a1dba228cf8d8b774aacf1c47fc53aa80ebc7a4c292"),
            ]));

    private static Curve25519PrivateKey Key(string hex) => Curve25519PrivateKey.FromBytes(Convert.FromHexString(hex));

    [Theory]
    [MemberData(nameof(Vectors))]
    public void Both_sides_reproduce_the_published_handshake_and_transport_messages(Vector vector)
    {
        using var initStatic = Key(vector.InitStatic);
        using var initEphemeral = Key(vector.InitEphemeral);
        using var respStatic = Key(vector.RespStatic);
        using var respEphemeral = Key(vector.RespEphemeral);
        var prologue = Convert.FromHexString(vector.Prologue);
        var psk = vector.Psk is null ? [] : Convert.FromHexString(vector.Psk);

        using var initiator = NoiseHandshake.Initiator(vector.Pattern, prologue, initStatic, respStatic.PublicKey, psk, initEphemeral);
        using var responder = NoiseHandshake.Responder(vector.Pattern, prologue, respStatic, psk, respEphemeral);

        // Message 1: initiator -> responder.
        var (payload0, cipher0) = Decode(vector.Messages[0]);
        var message = new byte[cipher0.Length];
        Assert.Equal(cipher0.Length, initiator.WriteMessage(payload0, message));
        Assert.Equal(Convert.ToHexStringLower(cipher0), Convert.ToHexStringLower(message));
        var received = new byte[payload0.Length];
        Assert.Equal(payload0.Length, responder.ReadMessage(message, received));
        Assert.Equal(payload0, received);
        Assert.Equal(initStatic.PublicKey, responder.RemoteStatic);

        // Message 2: responder -> initiator.
        var (payload1, cipher1) = Decode(vector.Messages[1]);
        message = new byte[cipher1.Length];
        Assert.Equal(cipher1.Length, responder.WriteMessage(payload1, message));
        Assert.Equal(Convert.ToHexStringLower(cipher1), Convert.ToHexStringLower(message));
        received = new byte[payload1.Length];
        Assert.Equal(payload1.Length, initiator.ReadMessage(message, received));
        Assert.Equal(payload1, received);

        Assert.True(initiator.IsComplete && responder.IsComplete);
        Assert.Equal(vector.HandshakeHash, Convert.ToHexStringLower(initiator.HandshakeHash));
        Assert.Equal(vector.HandshakeHash, Convert.ToHexStringLower(responder.HandshakeHash));

        // Transport: alternate directions, each side counting its own nonces from 0.
        byte[] iSend = new byte[32], iRecv = new byte[32], rSend = new byte[32], rRecv = new byte[32];
        initiator.Split(iSend, iRecv);
        responder.Split(rSend, rRecv);
        Assert.Equal(iSend, rRecv);
        Assert.Equal(iRecv, rSend);
        ulong initiatorNonce = 0, responderNonce = 0;
        for (var i = 2; i < vector.Messages.Length; i++)
        {
            var (payload, expected) = Decode(vector.Messages[i]);
            var fromInitiator = i % 2 == 0;
            var ciphertext = Seal(fromInitiator ? iSend : rSend, fromInitiator ? initiatorNonce++ : responderNonce++, payload);
            Assert.Equal(Convert.ToHexStringLower(expected), Convert.ToHexStringLower(ciphertext));
        }
    }

    [Fact]
    public void A_tampered_initiation_does_not_authenticate()
    {
        using var initStatic = Curve25519PrivateKey.Generate();
        using var respStatic = Curve25519PrivateKey.Generate();
        using var initiator = NoiseHandshake.Initiator(NoisePattern.IK, "p"u8, initStatic, respStatic.PublicKey);
        using var responder = NoiseHandshake.Responder(NoisePattern.IK, "p"u8, respStatic);

        var message = new byte[NoiseHandshake.InitiationSize(4)];
        initiator.WriteMessage("data"u8, message);
        message[40] ^= 1; // inside the encrypted static key

        Assert.Equal(-1, responder.ReadMessage(message, new byte[4]));
    }

    [Fact]
    public void A_different_prologue_or_psk_fails_the_handshake()
    {
        using var initStatic = Curve25519PrivateKey.Generate();
        using var respStatic = Curve25519PrivateKey.Generate();
        var psk = new byte[32];
        psk[0] = 1;

        using var initiator = NoiseHandshake.Initiator(NoisePattern.IKpsk2, "A"u8, initStatic, respStatic.PublicKey, psk);
        using var otherPrologue = NoiseHandshake.Responder(NoisePattern.IKpsk2, "B"u8, respStatic, psk);
        var message = new byte[NoiseHandshake.InitiationSize(0)];
        initiator.WriteMessage(default, message);
        Assert.Equal(-1, otherPrologue.ReadMessage(message, []));

        using var initiator2 = NoiseHandshake.Initiator(NoisePattern.IKpsk2, "A"u8, initStatic, respStatic.PublicKey, psk);
        using var responder = NoiseHandshake.Responder(NoisePattern.IKpsk2, "A"u8, respStatic, new byte[32]);
        initiator2.WriteMessage(default, message);
        Assert.Equal(0, responder.ReadMessage(message, []));
        var response = new byte[NoiseHandshake.ResponseSize(0)];
        responder.WriteMessage(default, response);
        Assert.Equal(-1, initiator2.ReadMessage(response, [])); // the psk differs: message 2 does not authenticate
    }

    [Fact]
    public void A_low_order_ephemeral_is_refused()
    {
        using var respStatic = Curve25519PrivateKey.Generate();
        using var responder = NoiseHandshake.Responder(NoisePattern.IK, default, respStatic);
        var message = new byte[NoiseHandshake.InitiationSize(0)]; // ephemeral = all zeros: X25519 gives zero

        Assert.Equal(-1, responder.ReadMessage(message, []));
    }

    [Fact]
    public void Messages_out_of_turn_are_an_error()
    {
        using var initStatic = Curve25519PrivateKey.Generate();
        using var respStatic = Curve25519PrivateKey.Generate();
        using var responder = NoiseHandshake.Responder(NoisePattern.IK, default, respStatic);

        Assert.Throws<InvalidOperationException>(() => responder.WriteMessage(default, new byte[100]));
    }

    private static (byte[] Payload, byte[] Ciphertext) Decode((string Payload, string Ciphertext) message) =>
        (Convert.FromHexString(message.Payload), Convert.FromHexString(message.Ciphertext));

    private static byte[] Seal(byte[] key, ulong counter, byte[] payload)
    {
        var aead = AeadAlgorithm.ChaCha20Poly1305;
        using var k = NSec.Cryptography.Key.Import(aead, key, KeyBlobFormat.RawSymmetricKey);
        var nonce = new byte[12];
        NoiseHandshake.NonceFor(counter, nonce);
        return aead.Encrypt(k, nonce, default, payload);
    }
}
