using System.Buffers.Binary;
using System.Net;
using Weft.Contracts.Crypto;
using Weft.Contracts.Keys;

namespace Weft.Contracts.Disco;

public enum DiscoMessageType : byte
{
    Ping = 0x01,
    Pong = 0x02,
    CallMeMaybe = 0x03,
}

/// <summary>A disco message, once opened.</summary>
public abstract record DiscoMessage;

/// <summary>"Are you there on this path?" <paramref name="Padding"/> zero bytes make the packet a probe of the path's MTU.</summary>
public sealed record DiscoPing(byte[] TxId, Curve25519PublicKey NodeKey, int Padding = 0) : DiscoMessage;

/// <summary>The answer to a ping, with the address the ping came from (what the peer sees of us, like STUN).</summary>
public sealed record DiscoPong(byte[] TxId, IPEndPoint Source) : DiscoMessage;

/// <summary>"Ping me at these endpoints": sent only through a relay.</summary>
public sealed record DiscoCallMeMaybe(IReadOnlyList<IPEndPoint> Endpoints) : DiscoMessage;

/// <summary>
/// Disco packets, Weft's variant of Tailscale's disco (see the README): they share the WireGuard
/// UDP socket and travel through relays. Wire form:
/// <code>
/// magic "WF💬" (6) | sender's disco public key (32) | SealedBox( type (1) | version (1) = 0 | body )
/// </code>
/// The box is <see cref="SealedBox"/> (X25519 + XChaCha20-Poly1305) between the two disco keys,
/// where Tailscale uses a NaCl box. Bodies: Ping = TxID (12) + node key (32) + zero padding;
/// Pong = TxID (12) + source IP (16, IPv4 as v4-mapped) + port (2, BE); CallMeMaybe = K × 18-byte
/// endpoints. Readers ignore trailing bytes, and a CallMeMaybe whose length is not a multiple of 18
/// reads as empty.
/// </summary>
public static class DiscoPacket
{
    public const int MagicSize = 6;
    public const int HeaderSize = MagicSize + 32;
    public const int TxIdSize = 12;
    public const int EndpointSize = 18;
    /// <summary>Bytes a disco packet adds to its body: header, box, type and version.</summary>
    public const int Overhead = HeaderSize + SealedBox.Overhead + 2;
    public const int MaxCallMeMaybeEndpoints = 32;
    public const int MaxPadding = 9000;

    /// <summary>The size of a sealed ping with <paramref name="padding"/> zero bytes (124 with none, like Tailscale's).</summary>
    public static int PingSize(int padding) => Overhead + TxIdSize + 32 + padding;

    public static ReadOnlySpan<byte> Magic => [0x57, 0x46, 0xf0, 0x9f, 0x92, 0xac];

    public static bool HasMagic(ReadOnlySpan<byte> packet) => packet.Length >= Overhead && packet[..MagicSize].SequenceEqual(Magic);

    /// <summary>The sender's disco key, read without opening the box; false if this is not a disco packet.</summary>
    public static bool TryReadSender(ReadOnlySpan<byte> packet, out Curve25519PublicKey sender)
    {
        sender = default;
        if (!HasMagic(packet)) return false;
        sender = new Curve25519PublicKey(packet.Slice(MagicSize, 32));
        return true;
    }

    public static byte[] Seal(DiscoMessage message, Curve25519PublicKey senderDiscoKey, SealedBox box)
    {
        var body = Encode(message);
        var packet = new byte[HeaderSize + body.Length + SealedBox.Overhead];
        Magic.CopyTo(packet);
        senderDiscoKey.CopyTo(packet.AsSpan(MagicSize, 32));
        box.Seal(body, packet.AsSpan(HeaderSize));
        return packet;
    }

    /// <summary>Opens and parses a disco packet; null if it does not authenticate or its message is unknown or malformed.</summary>
    public static DiscoMessage? Open(ReadOnlySpan<byte> packet, SealedBox box)
    {
        if (!HasMagic(packet)) return null;
        var plain = box.Open(packet[HeaderSize..]);
        return plain is null ? null : Decode(plain);
    }

    public static byte[] Encode(DiscoMessage message)
    {
        switch (message)
        {
            case DiscoPing ping:
            {
                if (ping.TxId.Length != TxIdSize) throw new ArgumentException("a TxID is 12 bytes");
                var padding = Math.Clamp(ping.Padding, 0, MaxPadding);
                var body = new byte[2 + TxIdSize + 32 + padding];
                body[0] = (byte)DiscoMessageType.Ping;
                ping.TxId.CopyTo(body, 2);
                ping.NodeKey.CopyTo(body.AsSpan(2 + TxIdSize, 32));
                return body;
            }
            case DiscoPong pong:
            {
                var body = new byte[2 + TxIdSize + EndpointSize];
                body[0] = (byte)DiscoMessageType.Pong;
                pong.TxId.CopyTo(body, 2);
                WriteEndpoint(pong.Source, body.AsSpan(2 + TxIdSize));
                return body;
            }
            case DiscoCallMeMaybe call:
            {
                var endpoints = call.Endpoints.Take(MaxCallMeMaybeEndpoints).ToList();
                var body = new byte[2 + endpoints.Count * EndpointSize];
                body[0] = (byte)DiscoMessageType.CallMeMaybe;
                for (var i = 0; i < endpoints.Count; i++) WriteEndpoint(endpoints[i], body.AsSpan(2 + i * EndpointSize));
                return body;
            }
            default:
                throw new ArgumentException($"unknown disco message {message.GetType().Name}");
        }
    }

    public static DiscoMessage? Decode(ReadOnlySpan<byte> plain)
    {
        if (plain.Length < 2 || plain[1] != 0) return null;
        var body = plain[2..];
        switch ((DiscoMessageType)plain[0])
        {
            case DiscoMessageType.Ping when body.Length >= TxIdSize + 32:
                return new DiscoPing(body[..TxIdSize].ToArray(), new Curve25519PublicKey(body.Slice(TxIdSize, 32)), body.Length - TxIdSize - 32);
            case DiscoMessageType.Pong when body.Length >= TxIdSize + EndpointSize:
                return ReadEndpoint(body.Slice(TxIdSize, EndpointSize)) is { } source ? new DiscoPong(body[..TxIdSize].ToArray(), source) : null;
            case DiscoMessageType.CallMeMaybe:
            {
                if (body.Length % EndpointSize != 0) return new DiscoCallMeMaybe([]);
                var endpoints = new List<IPEndPoint>();
                for (var i = 0; i < body.Length / EndpointSize && endpoints.Count < MaxCallMeMaybeEndpoints; i++)
                    if (ReadEndpoint(body.Slice(i * EndpointSize, EndpointSize)) is { } endpoint) endpoints.Add(endpoint);
                return new DiscoCallMeMaybe(endpoints);
            }
            default:
                return null;
        }
    }

    private static void WriteEndpoint(IPEndPoint endpoint, Span<byte> destination)
    {
        var address = endpoint.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? endpoint.Address.MapToIPv6() : endpoint.Address;
        address.TryWriteBytes(destination[..16], out _);
        BinaryPrimitives.WriteUInt16BigEndian(destination[16..], (ushort)endpoint.Port);
    }

    /// <summary>An endpoint, or null for the unspecified address or port 0.</summary>
    private static IPEndPoint? ReadEndpoint(ReadOnlySpan<byte> source)
    {
        var address = new IPAddress(source[..16]);
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        var port = BinaryPrimitives.ReadUInt16BigEndian(source[16..]);
        if (port == 0 || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any)) return null;
        return new IPEndPoint(address, port);
    }
}
