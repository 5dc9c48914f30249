using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Weft.Contracts.Crypto;
using Weft.Contracts.Keys;
using Weft.Contracts.Noise;

namespace Weft.Contracts.Control;

/// <summary>Constants both ends of the control channel agree on.</summary>
public static class ControlProtocol
{
    public const uint Version = 1;

    /// <summary>Mixed into the Noise handshake: a different protocol or version cannot complete it.</summary>
    public static readonly byte[] Prologue = Encoding.ASCII.GetBytes("Weft control protocol v1");

    /// <summary>The largest sealed frame either side accepts (a full netmap of a large tailnet fits).</summary>
    public const int MaxFrameSize = 16 * 1024 * 1024;

    /// <summary>
    /// The largest message an agent sends (registration, endpoints, pings are small): the coordinator
    /// refuses larger frames, so an unauthenticated stream cannot make it buffer megabytes.
    /// </summary>
    public const int MaxClientMessageSize = 64 * 1024;

    /// <summary>An initiation whose timestamp is further than this from the coordinator's clock is refused as stale.</summary>
    public static readonly TimeSpan MaxClockSkew = TimeSpan.FromMinutes(5);

    public const int TimestampSize = 8;

    /// <summary>
    /// The coordinator pings when it has heard nothing from the agent, or sent nothing to it, for this
    /// long; the agent answers with a pong. So each side hears the other at least this often on a live
    /// stream, however busy the other direction is.
    /// </summary>
    public static readonly TimeSpan KeepAliveInterval = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A stream on which nothing at all has been heard for this long (three keepalive intervals) is
    /// dead — its peer hung, froze or was cut off without the connection closing — and either side
    /// drops it (the agent reconnects).
    /// </summary>
    public static readonly TimeSpan SilenceLimit = 3 * KeepAliveInterval;

    /// <summary>
    /// The gRPC trailer with which a coordinator that turns a Connect away for now (busy, shutting
    /// down) says how many milliseconds the agent should wait before it tries that node again.
    /// </summary>
    public const string RetryAfterTrailer = "retry-after-ms";

    public static int InitiationSize => NoiseHandshake.InitiationSize(TimestampSize);

    public static int ResponseSize => NoiseHandshake.ResponseSize(0);
}

/// <summary>Why a control handshake or frame was refused. The codes travel in Error messages too.</summary>
public static class ControlErrorCodes
{
    public const string HandshakeMalformed = "handshake_malformed";
    public const string HandshakeUnauthenticated = "handshake_unauthenticated";
    public const string HandshakeStale = "handshake_stale";
    public const string HandshakeReplayed = "handshake_replayed";
    public const string HandshakeTimeout = "handshake_timeout";
    public const string FrameUnauthenticated = "frame_unauthenticated";
    public const string FrameTooLarge = "frame_too_large";
    public const string FrameMalformed = "frame_malformed";
    public const string AuthKeyUnknown = "auth_key_unknown";
    public const string AuthKeyExpired = "auth_key_expired";
    public const string AuthKeyRevoked = "auth_key_revoked";
    public const string AuthKeyUsed = "auth_key_used";
    /// <summary>The auth key's tags are no longer defined by the policy, or no longer its user's (the policy changed since the key was made).</summary>
    public const string AuthKeyTagsNotPermitted = "auth_key_tags_not_permitted";
    public const string TailnetUnknown = "tailnet_unknown";
    public const string MachineInOtherTailnet = "machine_in_other_tailnet";
    public const string NodeKeyProofInvalid = "node_key_proof_invalid";
    public const string NodeKeyInUse = "node_key_in_use";
    public const string NodeKeyMismatch = "node_key_mismatch";
    public const string CoordinatorKeyChanged = "coordinator_key_changed";
    public const string NotRegistered = "not_registered";
    public const string PendingApproval = "pending_approval";
    public const string DeviceDeleted = "device_deleted";
    public const string DeviceExpired = "device_expired";
    public const string LoggedOut = "logged_out";
    /// <summary>The agent's own: it has no coordinator yet (a daemon before its first <c>up --login-server</c>).</summary>
    public const string NotLoggedIn = "not_logged_in";
    public const string InvalidRequest = "invalid_request";
    public const string Unavailable = "unavailable";
    public const string SlowConsumer = "slow_consumer";
    /// <summary>Too many agents connect or register at once: try again after the given delay.</summary>
    public const string RateLimited = "rate_limited";
}

/// <summary>
/// One direction-pair of sealed frames after the handshake: ChaCha20-Poly1305 with the Noise split
/// keys and a counter per direction (nonce = 4 zero bytes ‖ counter, little-endian). The stream is
/// ordered, so the receive counter only ever advances by one: a replayed, dropped or reordered frame
/// fails to open.
/// </summary>
public sealed class ControlTransport : IDisposable
{
    private readonly byte[] _sendKey = GC.AllocateUninitializedArray<byte>(32, pinned: true);
    private readonly byte[] _receiveKey = GC.AllocateUninitializedArray<byte>(32, pinned: true);
    private ulong _sendCounter;
    private ulong _receiveCounter;
    private readonly object _sendLock = new();

    internal ControlTransport(NoiseHandshake handshake)
    {
        handshake.Split(_sendKey, _receiveKey);
    }

    public byte[] Seal(IMessage message) => Seal(message.ToByteArray());

    public byte[] Seal(byte[] plaintext)
    {
        if (plaintext.Length > ControlProtocol.MaxFrameSize) throw new InvalidOperationException($"message of {plaintext.Length} bytes exceeds the frame limit");
        var frame = new byte[plaintext.Length + 16];
        Span<byte> nonce = stackalloc byte[12];
        lock (_sendLock)
        {
            NoiseHandshake.NonceFor(_sendCounter++, nonce);
            Sodium.Seal(_sendKey, nonce, default, plaintext, frame);
        }
        return frame;
    }

    /// <summary>Opens the next frame; null if it does not authenticate (the caller ends the stream).</summary>
    public byte[]? Open(ReadOnlySpan<byte> frame)
    {
        if (frame.Length < 16 || frame.Length > ControlProtocol.MaxFrameSize + 16) return null;
        var plaintext = new byte[frame.Length - 16];
        Span<byte> nonce = stackalloc byte[12];
        NoiseHandshake.NonceFor(_receiveCounter, nonce);
        if (!Sodium.Open(_receiveKey, nonce, default, frame, plaintext)) return null;
        _receiveCounter++;
        return plaintext;
    }

    public void Dispose()
    {
        CryptographicOperations.ZeroMemory(_sendKey);
        CryptographicOperations.ZeroMemory(_receiveKey);
    }
}

/// <summary>The agent's side of the control handshake (Noise IK initiator: machine key → coordinator key).</summary>
public sealed class ControlInitiator : IDisposable
{
    private readonly NoiseHandshake _noise;

    private ControlInitiator(NoiseHandshake noise, byte[] initiation)
    {
        _noise = noise;
        Initiation = initiation;
    }

    public byte[] Initiation { get; }

    /// <summary>Starts a handshake. The payload is the current time, so that a replayed initiation can be told from a fresh one.</summary>
    public static ControlInitiator Begin(Curve25519PrivateKey machineKey, Curve25519PublicKey coordinatorKey, DateTimeOffset now)
    {
        var noise = NoiseHandshake.Initiator(NoisePattern.IK, ControlProtocol.Prologue, machineKey, coordinatorKey);
        Span<byte> timestamp = stackalloc byte[ControlProtocol.TimestampSize];
        BinaryPrimitives.WriteInt64LittleEndian(timestamp, now.ToUnixTimeMilliseconds());
        var message = new byte[ControlProtocol.InitiationSize];
        if (noise.WriteMessage(timestamp, message) != message.Length)
        {
            noise.Dispose();
            throw new InvalidOperationException("the coordinator key is not a valid Curve25519 key");
        }
        return new ControlInitiator(noise, message);
    }

    /// <summary>Completes the handshake with the coordinator's response; null if it does not authenticate.</summary>
    public ControlTransport? Complete(ReadOnlySpan<byte> response)
    {
        if (response.Length != ControlProtocol.ResponseSize || _noise.ReadMessage(response, default) != 0) return null;
        return new ControlTransport(_noise);
    }

    public void Dispose() => _noise.Dispose();
}

/// <summary>What the coordinator learned from an initiation it accepted.</summary>
public sealed record AcceptedHandshake(MachineKey Machine, DateTimeOffset Timestamp, byte[] Response, ControlTransport Transport);

/// <summary>The coordinator's side of the control handshake.</summary>
public static class ControlResponder
{
    /// <summary>Accepts an initiation, or returns the error code that explains the refusal.</summary>
    public static AcceptedHandshake? Accept(Curve25519PrivateKey coordinatorKey, ReadOnlySpan<byte> initiation, DateTimeOffset now, out string? errorCode)
    {
        errorCode = null;
        if (initiation.Length != ControlProtocol.InitiationSize)
        {
            errorCode = ControlErrorCodes.HandshakeMalformed;
            return null;
        }
        using var noise = NoiseHandshake.Responder(NoisePattern.IK, ControlProtocol.Prologue, coordinatorKey);
        Span<byte> payload = stackalloc byte[ControlProtocol.TimestampSize];
        if (noise.ReadMessage(initiation, payload) != ControlProtocol.TimestampSize)
        {
            errorCode = ControlErrorCodes.HandshakeUnauthenticated;
            return null;
        }
        var timestamp = DateTimeOffset.FromUnixTimeMilliseconds(BinaryPrimitives.ReadInt64LittleEndian(payload));
        if ((now - timestamp).Duration() > ControlProtocol.MaxClockSkew)
        {
            errorCode = ControlErrorCodes.HandshakeStale;
            return null;
        }
        var response = new byte[ControlProtocol.ResponseSize];
        if (noise.WriteMessage(default, response) != response.Length)
        {
            errorCode = ControlErrorCodes.HandshakeUnauthenticated;
            return null;
        }
        return new AcceptedHandshake(new MachineKey(noise.RemoteStatic), timestamp, response, new ControlTransport(noise));
    }
}

/// <summary>
/// Proof that an agent holds a node key's private half: HMAC-BLAKE2s keyed with
/// X25519(node private, coordinator public), over a label, the node key and the machine key.
/// Only the coordinator (with its private key) can check it, and it is bound to one machine.
/// </summary>
public static class NodeKeyProof
{
    private static readonly byte[] Label = Encoding.ASCII.GetBytes("weft node key proof v1");

    public static byte[] Create(Curve25519PrivateKey nodeKey, Curve25519PublicKey coordinatorKey, Curve25519PublicKey machineKey)
    {
        Span<byte> shared = stackalloc byte[32];
        if (!nodeKey.TryAgree(coordinatorKey, shared)) throw new InvalidOperationException("the coordinator key is not a valid Curve25519 key");
        var proof = Compute(shared, nodeKey.PublicKey, machineKey);
        CryptographicOperations.ZeroMemory(shared);
        return proof;
    }

    public static bool Verify(Curve25519PrivateKey coordinatorKey, Curve25519PublicKey nodeKey, Curve25519PublicKey machineKey, ReadOnlySpan<byte> proof)
    {
        if (proof.Length != HmacBlake2s.Size) return false;
        Span<byte> shared = stackalloc byte[32];
        if (!coordinatorKey.TryAgree(nodeKey, shared)) return false;
        var expected = Compute(shared, nodeKey, machineKey);
        CryptographicOperations.ZeroMemory(shared);
        return CryptographicOperations.FixedTimeEquals(expected, proof);
    }

    private static byte[] Compute(ReadOnlySpan<byte> shared, Curve25519PublicKey nodeKey, Curve25519PublicKey machineKey)
    {
        Span<byte> data = stackalloc byte[Label.Length + 64];
        Label.CopyTo(data);
        nodeKey.CopyTo(data[Label.Length..]);
        machineKey.CopyTo(data[(Label.Length + 32)..]);
        var proof = new byte[HmacBlake2s.Size];
        HmacBlake2s.Compute(shared, data, proof);
        return proof;
    }
}
