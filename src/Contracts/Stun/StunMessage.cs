using System.Buffers.Binary;
using System.IO.Hashing;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Weft.Contracts.Stun;

/// <summary>Why a datagram is not a STUN message Weft accepts; each reason is counted apart.</summary>
public enum StunError
{
    None = 0,
    /// <summary>Shorter than a header, or not STUN's shape (top bits, magic cookie, length).</summary>
    NotStun,
    TooLarge,
    /// <summary>An attribute runs past the message, or a padding byte is not zero.</summary>
    MalformedAttribute,
    /// <summary>FINGERPRINT is wrong, or is not the last attribute.</summary>
    BadFingerprint,
    /// <summary>A comprehension-required attribute this implementation does not know (RFC 5389 §7.3.1: the request fails).</summary>
    UnknownRequiredAttribute,
    /// <summary>A STUN message, but not the class and method asked for (a binding request or success response).</summary>
    WrongType,
    /// <summary>A binding response without a (XOR-)MAPPED-ADDRESS, or with a malformed one.</summary>
    NoMappedAddress,
    /// <summary>A response to a transaction this client did not start.</summary>
    UnexpectedTransaction,
}

/// <summary>
/// STUN binding requests and responses (RFC 5389, same wire format in RFC 8489), as the relay's
/// STUN server and the agent's netcheck use them: a 20-byte header (type, length, magic cookie
/// 0x2112A442, 96-bit transaction id) and TLV attributes padded to 4 bytes. A request carries
/// SOFTWARE and FINGERPRINT; a response carries XOR-MAPPED-ADDRESS and FINGERPRINT. Parsing never
/// throws: a malformed datagram is a <see cref="StunError"/>.
/// </summary>
public static class StunMessage
{
    public const int HeaderLength = 20;
    public const int TransactionIdLength = 12;
    /// <summary>The largest message either side accepts: far beyond a binding's few dozen bytes, well inside one datagram.</summary>
    public const int MaxLength = 1024;
    public const uint MagicCookie = 0x2112A442;
    public const ushort BindingRequest = 0x0001, BindingSuccess = 0x0101, BindingError = 0x0111;
    public const ushort MappedAddress = 0x0001, XorMappedAddress = 0x0020, XorMappedAddressOld = 0x8020, Software = 0x8022, Fingerprint = 0x8028;
    private const uint FingerprintXor = 0x5354554E;

    /// <summary>What the agent's requests say they are.</summary>
    public const string SoftwareName = "weft";

    public static byte[] NewTransactionId() => RandomNumberGenerator.GetBytes(TransactionIdLength);

    /// <summary>Does this datagram have STUN's shape (so that a shared socket hands it to STUN, not WireGuard or disco)?</summary>
    public static bool LooksLikeStun(ReadOnlySpan<byte> packet) =>
        packet.Length >= HeaderLength && (packet[0] & 0xC0) == 0 && BinaryPrimitives.ReadUInt32BigEndian(packet[4..]) == MagicCookie
        && BinaryPrimitives.ReadUInt16BigEndian(packet[2..]) is var length && length % 4 == 0 && length + HeaderLength == packet.Length;

    /// <summary>A binding request with SOFTWARE and FINGERPRINT.</summary>
    public static byte[] BindingRequestFor(ReadOnlySpan<byte> transactionId)
    {
        var software = System.Text.Encoding.ASCII.GetBytes(SoftwareName);
        var message = new byte[HeaderLength + 4 + Padded(software.Length) + 8];
        WriteHeader(message, BindingRequest, transactionId);
        var at = WriteAttribute(message, HeaderLength, Software, software);
        WriteFingerprint(message, at);
        return message;
    }

    /// <summary>The success response to a binding request: the address the request came from, XORed, and FINGERPRINT.</summary>
    public static byte[] BindingResponseFor(ReadOnlySpan<byte> transactionId, IPEndPoint mapped)
    {
        var address = mapped.Address.IsIPv4MappedToIPv6 ? mapped.Address.MapToIPv4() : mapped.Address;
        var addressLength = address.AddressFamily == AddressFamily.InterNetwork ? 4 : 16;
        var message = new byte[HeaderLength + 4 + 4 + addressLength + 8];
        WriteHeader(message, BindingSuccess, transactionId);
        Span<byte> value = stackalloc byte[4 + addressLength];
        value[1] = addressLength == 4 ? (byte)1 : (byte)2;
        BinaryPrimitives.WriteUInt16BigEndian(value[2..], (ushort)(mapped.Port ^ (MagicCookie >> 16)));
        address.TryWriteBytes(value[4..], out _);
        Xor(value[4..], message.AsSpan(4, 16));
        var at = WriteAttribute(message, HeaderLength, XorMappedAddress, value);
        WriteFingerprint(message, at);
        return message;
    }

    /// <summary>Reads a binding request: its transaction id, or why it is refused.</summary>
    public static StunError TryReadBindingRequest(ReadOnlySpan<byte> packet, out byte[] transactionId)
    {
        transactionId = [];
        var error = ReadMessage(packet, out var type, out var mapped, out var xorMapped);
        if (error != StunError.None) return error;
        if (type != BindingRequest) return StunError.WrongType;
        _ = (mapped, xorMapped);
        transactionId = packet.Slice(8, TransactionIdLength).ToArray();
        return StunError.None;
    }

    public const ushort ChangeRequest = 0x0003;
    public const int ClassicTransactionIdLength = 16;

    /// <summary>
    /// Reads an RFC 3489 ("classic") binding request, which has no magic cookie and a 16-byte
    /// transaction id: older clients (Debian's stun-client) still send them. Only a plain binding is
    /// answered: a CHANGE-REQUEST asking for another address or port is refused as
    /// <see cref="StunError.UnknownRequiredAttribute"/>, because one socket cannot honour it.
    /// </summary>
    public static StunError TryReadClassicBindingRequest(ReadOnlySpan<byte> packet, out byte[] transactionId)
    {
        transactionId = [];
        if (packet.Length > MaxLength) return StunError.TooLarge;
        if (packet.Length < HeaderLength || (packet[0] & 0xC0) != 0 || BinaryPrimitives.ReadUInt16BigEndian(packet[2..]) + HeaderLength != packet.Length)
            return StunError.NotStun;
        if (BinaryPrimitives.ReadUInt16BigEndian(packet) != BindingRequest) return StunError.WrongType;
        for (var at = HeaderLength; at < packet.Length;)
        {
            if (packet.Length - at < 4) return StunError.MalformedAttribute;
            var attribute = BinaryPrimitives.ReadUInt16BigEndian(packet[at..]);
            var length = BinaryPrimitives.ReadUInt16BigEndian(packet[(at + 2)..]);
            if (at + 4 + length > packet.Length) return StunError.MalformedAttribute;
            if (attribute == ChangeRequest && (length != 4 || BinaryPrimitives.ReadUInt32BigEndian(packet[(at + 4)..]) != 0)) return StunError.UnknownRequiredAttribute;
            at += 4 + length;
        }
        transactionId = packet.Slice(4, ClassicTransactionIdLength).ToArray();
        return StunError.None;
    }

    /// <summary>The RFC 3489 answer: MAPPED-ADDRESS in the clear, the client's 16-byte transaction id echoed.</summary>
    public static byte[] ClassicBindingResponseFor(ReadOnlySpan<byte> transactionId, IPEndPoint mapped)
    {
        if (transactionId.Length != ClassicTransactionIdLength) throw new ArgumentException("a classic transaction id is 16 bytes", nameof(transactionId));
        var address = mapped.Address.IsIPv4MappedToIPv6 ? mapped.Address.MapToIPv4() : mapped.Address;
        var addressLength = address.AddressFamily == AddressFamily.InterNetwork ? 4 : 16;
        var message = new byte[HeaderLength + 4 + 4 + addressLength];
        BinaryPrimitives.WriteUInt16BigEndian(message, BindingSuccess);
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(2), (ushort)(message.Length - HeaderLength));
        transactionId.CopyTo(message.AsSpan(4));
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(HeaderLength), MappedAddress);
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(HeaderLength + 2), (ushort)(4 + addressLength));
        message[HeaderLength + 5] = addressLength == 4 ? (byte)1 : (byte)2;
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(HeaderLength + 6), (ushort)mapped.Port);
        address.TryWriteBytes(message.AsSpan(HeaderLength + 8), out _);
        return message;
    }

    /// <summary>
    /// Reads a binding success response: the mapped address (XOR-MAPPED-ADDRESS, its pre-RFC code
    /// 0x8020, or MAPPED-ADDRESS), checked against <paramref name="expectedTransaction"/> when given.
    /// </summary>
    public static StunError TryReadBindingResponse(ReadOnlySpan<byte> packet, ReadOnlySpan<byte> expectedTransaction, out IPEndPoint mapped)
    {
        mapped = new IPEndPoint(IPAddress.None, 0);
        var error = ReadMessage(packet, out var type, out var plain, out var xored);
        if (error != StunError.None) return error;
        if (type != BindingSuccess) return StunError.WrongType;
        if (!expectedTransaction.IsEmpty && !packet.Slice(8, TransactionIdLength).SequenceEqual(expectedTransaction)) return StunError.UnexpectedTransaction;
        var (offset, isXored) = xored >= 0 ? (xored, true) : (plain, false);
        if (offset < 0) return StunError.NoMappedAddress;
        var length = BinaryPrimitives.ReadUInt16BigEndian(packet[(offset + 2)..]);
        var value = packet.Slice(offset + 4, length);
        var addressLength = value.Length >= 2 && value[1] == 1 ? 4 : value.Length >= 2 && value[1] == 2 ? 16 : -1;
        if (addressLength < 0 || value.Length != 4 + addressLength) return StunError.NoMappedAddress;
        Span<byte> address = stackalloc byte[addressLength];
        value[4..].CopyTo(address);
        var port = BinaryPrimitives.ReadUInt16BigEndian(value[2..]);
        if (isXored)
        {
            port ^= (ushort)(MagicCookie >> 16);
            Xor(address, packet.Slice(4, 16));
        }
        mapped = new IPEndPoint(new IPAddress(address), port);
        return StunError.None;
    }

    /// <summary>Checks the header, walks the attributes and the FINGERPRINT; finds the address attributes (offsets, or -1).</summary>
    private static StunError ReadMessage(ReadOnlySpan<byte> packet, out ushort type, out int mappedAt, out int xorMappedAt)
    {
        type = 0;
        mappedAt = xorMappedAt = -1;
        if (packet.Length > MaxLength) return StunError.TooLarge;
        if (!LooksLikeStun(packet)) return StunError.NotStun;
        type = BinaryPrimitives.ReadUInt16BigEndian(packet);
        var at = HeaderLength;
        while (at < packet.Length)
        {
            if (packet.Length - at < 4) return StunError.MalformedAttribute;
            var attribute = BinaryPrimitives.ReadUInt16BigEndian(packet[at..]);
            var length = BinaryPrimitives.ReadUInt16BigEndian(packet[(at + 2)..]);
            var end = at + 4 + Padded(length);
            if (end > packet.Length) return StunError.MalformedAttribute;
            switch (attribute)
            {
                case MappedAddress: mappedAt = at; break;
                case XorMappedAddress or XorMappedAddressOld: xorMappedAt = at; break;
                case Fingerprint:
                    if (length != 4 || end != packet.Length) return StunError.BadFingerprint;
                    var expected = Crc32.HashToUInt32(packet[..at]) ^ FingerprintXor;
                    if (BinaryPrimitives.ReadUInt32BigEndian(packet[(at + 4)..]) != expected) return StunError.BadFingerprint;
                    break;
                case < 0x8000 when attribute is not (0x0006 or 0x0008 or 0x0009 or 0x000A or 0x0014 or 0x0015 or 0x001C or 0x001E):
                    // USERNAME, MESSAGE-INTEGRITY(-SHA256), ERROR-CODE, UNKNOWN-ATTRIBUTES, REALM, NONCE, USERHASH are known (and unused by a binding).
                    return StunError.UnknownRequiredAttribute;
            }
            at = end;
        }
        return StunError.None;
    }

    private static void WriteHeader(Span<byte> message, ushort type, ReadOnlySpan<byte> transactionId)
    {
        if (transactionId.Length != TransactionIdLength) throw new ArgumentException($"a STUN transaction id is {TransactionIdLength} bytes", nameof(transactionId));
        BinaryPrimitives.WriteUInt16BigEndian(message, type);
        BinaryPrimitives.WriteUInt16BigEndian(message[2..], (ushort)(message.Length - HeaderLength));
        BinaryPrimitives.WriteUInt32BigEndian(message[4..], MagicCookie);
        transactionId.CopyTo(message[8..]);
    }

    private static int WriteAttribute(Span<byte> message, int at, ushort type, ReadOnlySpan<byte> value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(message[at..], type);
        BinaryPrimitives.WriteUInt16BigEndian(message[(at + 2)..], (ushort)value.Length);
        value.CopyTo(message[(at + 4)..]);
        return at + 4 + Padded(value.Length);
    }

    /// <summary>FINGERPRINT, last: CRC-32 of everything before it (the header's length already counting it), XOR 0x5354554E.</summary>
    private static void WriteFingerprint(Span<byte> message, int at)
    {
        BinaryPrimitives.WriteUInt16BigEndian(message[at..], Fingerprint);
        BinaryPrimitives.WriteUInt16BigEndian(message[(at + 2)..], 4);
        BinaryPrimitives.WriteUInt32BigEndian(message[(at + 4)..], Crc32.HashToUInt32(message[..at]) ^ FingerprintXor);
    }

    private static int Padded(int length) => (length + 3) & ~3;

    /// <summary>XORs an address with the cookie and transaction id (the header's bytes 4..19), byte by byte.</summary>
    private static void Xor(Span<byte> address, ReadOnlySpan<byte> cookieAndTransaction)
    {
        for (var i = 0; i < address.Length; i++) address[i] ^= cookieAndTransaction[i];
    }
}
