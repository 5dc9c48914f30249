using System.Buffers.Binary;
using NSec.Cryptography;

namespace Weft.NodeAgent.WireGuard;

/// <summary>
/// The transport keys of one session: a send key with its counter, a receive key with its replay
/// window, and the two indices that name it on the wire. Thread-safe for the packet path:
/// the send counter is atomic, the replay window locks itself.
/// </summary>
public sealed class Keypair : IDisposable
{
    private static readonly AeadAlgorithm ChaChaPoly = AeadAlgorithm.ChaCha20Poly1305;

    private readonly Key _send;
    private readonly Key _receive;
    private long _sendCounter = -1;
    private int _disposed;

    public Keypair(Peer peer, ReadOnlySpan<byte> sendKey, ReadOnlySpan<byte> receiveKey, bool isInitiator, uint localIndex, uint remoteIndex, long createdMs)
    {
        Peer = peer;
        _send = Key.Import(ChaChaPoly, sendKey, KeyBlobFormat.RawSymmetricKey);
        _receive = Key.Import(ChaChaPoly, receiveKey, KeyBlobFormat.RawSymmetricKey);
        IsInitiator = isInitiator;
        LocalIndex = localIndex;
        RemoteIndex = remoteIndex;
        CreatedMs = createdMs;
    }

    public Peer Peer { get; }

    public bool IsInitiator { get; }

    public uint LocalIndex { get; }

    public uint RemoteIndex { get; }

    public long CreatedMs { get; }

    public ReplayWindow Replay { get; } = new();

    /// <summary>Set once the initiator has sent the last-minute rekey for this keypair (sent only once).</summary>
    public int SentLastMinuteHandshake;

    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>The counter for the next packet (starting at 0).</summary>
    public ulong NextCounter() => (ulong)Interlocked.Increment(ref _sendCounter);

    public ulong SentCount => (ulong)(Interlocked.Read(ref _sendCounter) + 1);

    public long AgeMs(long nowMs) => nowMs - CreatedMs;

    /// <summary>Usable for sending: not too old, not too many messages (wireguard-go keypair validity).</summary>
    public bool CanSend(long nowMs, WireGuardTimings timings) =>
        !IsDisposed && AgeMs(nowMs) < timings.RejectAfterTime.TotalMilliseconds && SentCount < Constants.RejectAfterMessages;

    /// <summary>Seals <paramref name="plaintext"/> into <paramref name="ciphertext"/> (plaintext length + 16); they may start at the same byte.</summary>
    public void Seal(ulong counter, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext)
    {
        Span<byte> nonce = stackalloc byte[12];
        nonce[..4].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(nonce[4..], counter);
        ChaChaPoly.Encrypt(_send, nonce, default, plaintext, ciphertext);
    }

    /// <summary>Opens a transport payload in place or into <paramref name="plaintext"/>; false if it does not authenticate.</summary>
    public bool Open(ulong counter, ReadOnlySpan<byte> ciphertext, Span<byte> plaintext)
    {
        Span<byte> nonce = stackalloc byte[12];
        nonce[..4].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(nonce[4..], counter);
        return ChaChaPoly.Decrypt(_receive, nonce, default, ciphertext, plaintext);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _send.Dispose();
        _receive.Dispose();
    }
}
