using System.Buffers.Binary;
using Weft.Contracts.Keys;

namespace Weft.Contracts.Relay;

/// <summary>The relay's frame types (modelled on Tailscale's DERP, see docs in the README).</summary>
public enum RelayFrameType : byte
{
    /// <summary>S→C: 8-byte magic + the server's 32-byte key.</summary>
    ServerKey = 0x01,
    /// <summary>C→S: the client's 32-byte node key + <see cref="Crypto.SealedBox"/>(JSON <see cref="ClientInfo"/>).</summary>
    ClientInfo = 0x02,
    /// <summary>S→C: <see cref="Crypto.SealedBox"/>(JSON <see cref="ServerInfo"/>).</summary>
    ServerInfo = 0x03,
    /// <summary>C→S: 32-byte destination node key + packet.</summary>
    SendPacket = 0x04,
    /// <summary>S→C: 32-byte source node key + packet.</summary>
    RecvPacket = 0x05,
    /// <summary>S→C: empty; the connection is alive.</summary>
    KeepAlive = 0x06,
    /// <summary>C→S: one byte, 1 if this is the client's home region.</summary>
    NotePreferred = 0x07,
    /// <summary>S→C: 32-byte key + 1-byte <see cref="PeerGoneReason"/>.</summary>
    PeerGone = 0x08,
    /// <summary>S→mesh watcher: 32-byte key of a client now connected here.</summary>
    PeerPresent = 0x09,
    /// <summary>mesh→S: 32-byte source + 32-byte destination + packet, for local delivery only.</summary>
    ForwardPacket = 0x0A,
    /// <summary>mesh→S: empty; stream PeerPresent/PeerGone for every client.</summary>
    WatchConns = 0x10,
    /// <summary>mesh→S: 32-byte key; close that client's connections.</summary>
    ClosePeer = 0x11,
    /// <summary>Either way: 8 bytes to echo.</summary>
    Ping = 0x12,
    /// <summary>Either way: the 8 bytes of the ping answered.</summary>
    Pong = 0x13,
    /// <summary>S→C: UTF-8 problem text; empty clears it.</summary>
    Health = 0x14,
    /// <summary>S→C: two big-endian uint32 milliseconds, reconnect-in and try-for.</summary>
    Restarting = 0x15,
}

public enum PeerGoneReason : byte
{
    /// <summary>The peer left the region.</summary>
    Disconnected = 0x00,
    /// <summary>No client with that key is connected here.</summary>
    NotHere = 0x01,
}

/// <summary>
/// Frame = 1 type byte + 4-byte big-endian payload length + payload. Limits follow DERP: a packet
/// is at most 64 KiB, a login frame at most 8 KiB, and no frame more than 64 KiB + 64.
/// </summary>
public static class RelayFrame
{
    public const int HeaderSize = 5;
    public const int KeySize = Curve25519PublicKey.Size;
    public const int MaxPacketSize = 64 * 1024;
    public const int MaxLoginSize = 8 * 1024;
    public const int MaxFrameSize = MaxPacketSize + 2 * KeySize;
    public const int PingSize = 8;

    /// <summary>"WEFTRLY" + 0x01: starts the ServerKey payload, and the raw-TCP client preface.</summary>
    public static ReadOnlySpan<byte> Magic => "WEFTRLY\u0001"u8;

    /// <summary>Disco packets start with this (see <see cref="Disco.DiscoPacket"/>): the relay queues them apart from data.</summary>
    public static bool IsDisco(ReadOnlySpan<byte> packet) => Disco.DiscoPacket.HasMagic(packet);

    public static byte[] Build(RelayFrameType type, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[HeaderSize + payload.Length];
        WriteHeader(frame, type, payload.Length);
        payload.CopyTo(frame.AsSpan(HeaderSize));
        return frame;
    }

    /// <summary>A frame whose payload is a key followed by a packet (SendPacket, RecvPacket).</summary>
    public static byte[] Build(RelayFrameType type, Curve25519PublicKey key, ReadOnlySpan<byte> packet)
    {
        var frame = new byte[HeaderSize + KeySize + packet.Length];
        WriteHeader(frame, type, KeySize + packet.Length);
        key.CopyTo(frame.AsSpan(HeaderSize, KeySize));
        packet.CopyTo(frame.AsSpan(HeaderSize + KeySize));
        return frame;
    }

    public static byte[] BuildForward(Curve25519PublicKey source, Curve25519PublicKey destination, ReadOnlySpan<byte> packet)
    {
        var frame = new byte[HeaderSize + 2 * KeySize + packet.Length];
        WriteHeader(frame, RelayFrameType.ForwardPacket, 2 * KeySize + packet.Length);
        source.CopyTo(frame.AsSpan(HeaderSize, KeySize));
        destination.CopyTo(frame.AsSpan(HeaderSize + KeySize, KeySize));
        packet.CopyTo(frame.AsSpan(HeaderSize + 2 * KeySize));
        return frame;
    }

    public static byte[] BuildPeerGone(Curve25519PublicKey key, PeerGoneReason reason)
    {
        var frame = new byte[HeaderSize + KeySize + 1];
        WriteHeader(frame, RelayFrameType.PeerGone, KeySize + 1);
        key.CopyTo(frame.AsSpan(HeaderSize, KeySize));
        frame[^1] = (byte)reason;
        return frame;
    }

    public static void WriteHeader(Span<byte> destination, RelayFrameType type, int payloadLength)
    {
        destination[0] = (byte)type;
        BinaryPrimitives.WriteUInt32BigEndian(destination[1..], (uint)payloadLength);
    }

    /// <summary>The largest payload accepted for a frame type from the other side.</summary>
    public static int MaxPayload(RelayFrameType type) => type switch
    {
        RelayFrameType.ServerKey or RelayFrameType.ClientInfo or RelayFrameType.ServerInfo or RelayFrameType.Health => MaxLoginSize,
        RelayFrameType.KeepAlive or RelayFrameType.WatchConns => 0,
        RelayFrameType.NotePreferred => 1,
        RelayFrameType.PeerGone => KeySize + 1,
        RelayFrameType.PeerPresent or RelayFrameType.ClosePeer => KeySize + 64,
        RelayFrameType.Ping => 1000,
        RelayFrameType.Pong => PingSize,
        RelayFrameType.Restarting => 8,
        RelayFrameType.SendPacket or RelayFrameType.RecvPacket => KeySize + MaxPacketSize,
        RelayFrameType.ForwardPacket => 2 * KeySize + MaxPacketSize,
        _ => MaxFrameSize, // unknown types are read and skipped, as DERP does
    };
}

/// <summary>A frame that broke the protocol: the connection is closed with this reason.</summary>
public sealed class RelayProtocolException(string reason, string message) : Exception(message)
{
    /// <summary>A short, stable reason (counted by the relay).</summary>
    public string Reason { get; } = reason;
}

/// <summary>Reads frames from a stream, refusing any frame larger than its type allows.</summary>
public sealed class RelayFrameReader(Stream stream)
{
    private readonly byte[] _header = new byte[RelayFrame.HeaderSize];

    /// <summary>The next frame, or null at a clean end of stream. Throws <see cref="RelayProtocolException"/> on a bad frame.</summary>
    public ValueTask<(RelayFrameType Type, byte[] Payload)?> ReadAsync(CancellationToken cancel) => ReadAsync(cancel, onlyType: null);

    /// <summary>
    /// The next frame, which must be of <paramref name="onlyType"/> (when given): any other is refused from its
    /// header (<paramref name="unexpectedReason"/>), before its payload is read. A peer that has not logged in yet
    /// thus makes the reader hold no more than a login's size, whatever type it names.
    /// </summary>
    public async ValueTask<(RelayFrameType Type, byte[] Payload)?> ReadAsync(CancellationToken cancel, RelayFrameType? onlyType, string unexpectedReason = "unexpected_frame")
    {
        if (!await FillAsync(_header, cancel, allowEnd: true)) return null;
        var type = (RelayFrameType)_header[0];
        var length = BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(1));
        if (onlyType is { } expected && type != expected)
            throw new RelayProtocolException(unexpectedReason, $"expected a {expected} frame here, got {type}");
        if (length > (uint)RelayFrame.MaxPayload(type))
            throw new RelayProtocolException("oversized_frame", $"a {type} frame of {length} bytes is larger than the {RelayFrame.MaxPayload(type)} allowed");
        var payload = length == 0 ? [] : new byte[length];
        if (length > 0 && !await FillAsync(payload, cancel, allowEnd: false)) return null;
        return (type, payload);
    }

    private async ValueTask<bool> FillAsync(byte[] buffer, CancellationToken cancel, bool allowEnd)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(read), cancel);
            if (n == 0)
            {
                if (read == 0 && allowEnd) return false;
                throw new RelayProtocolException("truncated_frame", "the connection ended inside a frame");
            }
            read += n;
        }
        return true;
    }
}
