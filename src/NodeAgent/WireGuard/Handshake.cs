using System.Text;
using Weft.Contracts.Keys;
using Weft.Contracts.Noise;

namespace Weft.NodeAgent.WireGuard;

/// <summary>An initiation the responder has decrypted: who sent it, its timestamp, and the handshake to answer.</summary>
public sealed record ConsumedInitiation(NoiseHandshake Noise, uint SenderIndex, byte[] Timestamp, Curve25519PublicKey PeerKey);

/// <summary>
/// WireGuard's handshake messages (wireguard-go noise-protocol.go) on top of the shared Noise IKpsk2
/// core: the prologue is WireGuard's identifier, message 1 carries a TAI64N timestamp, message 2
/// an empty payload, and both are framed with indices and mac1/mac2.
/// </summary>
public static class Handshake
{
    /// <summary>Mixed in as the Noise prologue: Hi = HASH(Ci ‖ IDENTIFIER).</summary>
    public static readonly byte[] Identifier = Encoding.ASCII.GetBytes("WireGuard v1 zx2c4 Jason@zx2c4.com");

    /// <summary>Writes a 148-byte initiation to <paramref name="peer"/> and registers its local index.</summary>
    public static PendingHandshake CreateInitiation(Curve25519PrivateKey staticKey, Peer peer, IndexTable indices, EngineClock clock, Span<byte> message)
    {
        var noise = NoiseHandshake.Initiator(NoisePattern.IKpsk2, Identifier, staticKey, peer.PublicKey, peer.PresharedKey,
            staticSecrets: (_, shared) => peer.TryCopyStaticStatic(shared));
        Span<byte> timestamp = stackalloc byte[Tai64n.Size];
        Tai64n.Write(clock.WallNow, timestamp);

        message[..Messages.InitiationSize].Clear();
        Messages.WriteHeader(message, Messages.TypeInitiation);
        if (noise.WriteMessage(timestamp, message.Slice(Messages.InitiationNoise, Messages.InitiationNoiseSize)) != Messages.InitiationNoiseSize)
        {
            noise.Dispose();
            throw new InvalidOperationException($"peer {peer} has an invalid public key (X25519 result is zero)");
        }

        var entry = new IndexEntry(peer);
        var index = indices.Add(entry);
        var pending = new PendingHandshake(noise, index, clock.NowMs);
        entry.Handshake = pending;
        Messages.WriteIndex(message, Messages.InitiationSender, index);
        peer.Cookies.AddMacs(message[..Messages.InitiationSize], Messages.TypeInitiation, clock.NowMs);
        return pending;
    }

    /// <summary>Decrypts an initiation (mac1 already checked). Null if it does not authenticate to our static key.</summary>
    public static ConsumedInitiation? ConsumeInitiation(Curve25519PrivateKey staticKey, ReadOnlySpan<byte> message, StaticSecretSource? staticSecrets = null)
    {
        if (message.Length != Messages.InitiationSize) return null;
        var noise = NoiseHandshake.Responder(NoisePattern.IKpsk2, Identifier, staticKey, staticSecrets: staticSecrets);
        var timestamp = new byte[Tai64n.Size];
        if (noise.ReadMessage(message.Slice(Messages.InitiationNoise, Messages.InitiationNoiseSize), timestamp) != Tai64n.Size)
        {
            noise.Dispose();
            return null;
        }
        return new ConsumedInitiation(noise, Messages.ReadIndex(message, Messages.InitiationSender), timestamp, noise.RemoteStatic);
    }

    /// <summary>Answers a consumed initiation with a 92-byte response; returns the responder's keypair (to install as "next").</summary>
    public static Keypair CreateResponse(ConsumedInitiation initiation, Peer peer, IndexTable indices, EngineClock clock, Span<byte> message)
    {
        var noise = initiation.Noise;
        noise.SetPresharedKey(peer.PresharedKey);

        message[..Messages.ResponseSize].Clear();
        Messages.WriteHeader(message, Messages.TypeResponse);
        if (noise.WriteMessage(default, message.Slice(Messages.ResponseNoise, Messages.ResponseNoiseSize)) != Messages.ResponseNoiseSize)
            throw new InvalidOperationException($"peer {peer} sent an invalid ephemeral key");

        var entry = new IndexEntry(peer);
        var index = indices.Add(entry);
        Messages.WriteIndex(message, Messages.ResponseSender, index);
        Messages.WriteIndex(message, Messages.ResponseReceiver, initiation.SenderIndex);
        peer.Cookies.AddMacs(message[..Messages.ResponseSize], Messages.TypeResponse, clock.NowMs);

        var keypair = Derive(noise, peer, isInitiator: false, index, initiation.SenderIndex, clock.NowMs);
        entry.Keypair = keypair;
        noise.Dispose();
        return keypair;
    }

    /// <summary>Completes our own handshake with the peer's response (mac1 already checked); null if it does not authenticate.</summary>
    public static Keypair? ConsumeResponse(PendingHandshake pending, IndexEntry entry, ReadOnlySpan<byte> message, EngineClock clock)
    {
        if (message.Length != Messages.ResponseSize) return null;
        if (pending.Noise.ReadMessage(message.Slice(Messages.ResponseNoise, Messages.ResponseNoiseSize), default) != 0) return null;
        var keypair = Derive(pending.Noise, entry.Peer, isInitiator: true, pending.LocalIndex, Messages.ReadIndex(message, Messages.ResponseSender), clock.NowMs);
        entry.Handshake = null;
        entry.Keypair = keypair;
        pending.Dispose();
        return keypair;
    }

    private static Keypair Derive(NoiseHandshake noise, Peer peer, bool isInitiator, uint localIndex, uint remoteIndex, long nowMs)
    {
        Span<byte> send = stackalloc byte[32];
        Span<byte> receive = stackalloc byte[32];
        noise.Split(send, receive);
        var keypair = new Keypair(peer, send, receive, isInitiator, localIndex, remoteIndex, nowMs);
        send.Clear();
        receive.Clear();
        return keypair;
    }
}
