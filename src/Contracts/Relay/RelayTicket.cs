using System.Buffers.Binary;
using System.Text;
using NSec.Cryptography;
using Weft.Contracts.Keys;

namespace Weft.Contracts.Relay;

/// <summary>
/// The cluster's permission for one node key to use the relays until a time: what a relay checks
/// before it lets a client in, so that keys the cluster never registered are refused.
/// <para>Wire form (all integers big-endian):</para>
/// <code>
/// version (1) = 1 | node key (32) | expiry, Unix seconds (8) | tailnet id length (1) | tailnet id (UTF-8)
/// | Ed25519 signature (64) over everything before it
/// </code>
/// </summary>
public sealed record RelayTicket(Curve25519PublicKey NodeKey, string TailnetId, DateTimeOffset Expiry)
{
    public const byte Version = 1;
    public const int SignatureSize = 64;
    public const int MaxTailnetIdBytes = 64;
    public const int MaxSize = 1 + 32 + 8 + 1 + MaxTailnetIdBytes + SignatureSize;

    private static readonly SignatureAlgorithm Ed25519 = SignatureAlgorithm.Ed25519;

    /// <summary>The wire form it was read from (<see cref="Verify"/> keeps it, so that a relay can show the ticket to its issuer); empty for a ticket made here.</summary>
    public byte[] Signed { get; init; } = [];

    /// <summary>The signed wire form.</summary>
    public byte[] Sign(Key signingKey)
    {
        var body = Body();
        var ticket = new byte[body.Length + SignatureSize];
        body.CopyTo(ticket, 0);
        Ed25519.Sign(signingKey, body, ticket.AsSpan(body.Length));
        return ticket;
    }

    private byte[] Body()
    {
        var tailnet = Encoding.UTF8.GetBytes(TailnetId);
        if (tailnet.Length > MaxTailnetIdBytes) throw new ArgumentException($"a tailnet id in a ticket is at most {MaxTailnetIdBytes} bytes");
        var body = new byte[1 + 32 + 8 + 1 + tailnet.Length];
        body[0] = Version;
        NodeKey.CopyTo(body.AsSpan(1, 32));
        BinaryPrimitives.WriteInt64BigEndian(body.AsSpan(33), Expiry.ToUnixTimeSeconds());
        body[41] = (byte)tailnet.Length;
        tailnet.CopyTo(body, 42);
        return body;
    }

    /// <summary>
    /// Reads and checks a ticket: its shape, a signature by one of <paramref name="issuers"/>, and
    /// that it has not expired at <paramref name="now"/>. On failure, <paramref name="refusal"/> names
    /// the reason (a <see cref="TicketRefusal"/>).
    /// </summary>
    public static RelayTicket? Verify(ReadOnlySpan<byte> ticket, IReadOnlyList<PublicKey> issuers, DateTimeOffset now, out TicketRefusal refusal)
    {
        refusal = TicketRefusal.None;
        if (ticket.Length < 42 + SignatureSize || ticket.Length > MaxSize) { refusal = TicketRefusal.Malformed; return null; }
        if (ticket[0] != Version) { refusal = TicketRefusal.UnknownVersion; return null; }
        var tailnetLength = ticket[41];
        if (tailnetLength > MaxTailnetIdBytes || ticket.Length != 42 + tailnetLength + SignatureSize) { refusal = TicketRefusal.Malformed; return null; }
        var body = ticket[..(42 + tailnetLength)];
        var signature = ticket[body.Length..];
        var signed = false;
        foreach (var issuer in issuers)
        {
            if (Ed25519.Verify(issuer, body, signature)) { signed = true; break; }
        }
        if (!signed) { refusal = TicketRefusal.BadSignature; return null; }
        string tailnetId;
        try { tailnetId = new UTF8Encoding(false, true).GetString(body[42..]); }
        catch (DecoderFallbackException) { refusal = TicketRefusal.Malformed; return null; }
        var expiry = DateTimeOffset.FromUnixTimeSeconds(Math.Clamp(BinaryPrimitives.ReadInt64BigEndian(body[33..]), 0, 253402300799));
        if (expiry <= now) { refusal = TicketRefusal.Expired; return null; }
        return new RelayTicket(new Curve25519PublicKey(body.Slice(1, 32)), tailnetId, expiry) { Signed = ticket.ToArray() };
    }

    /// <summary>
    /// The node key a ticket names, read without checking its signature: what the holder uses to
    /// match a ticket with its own key (the relay verifies with <see cref="Verify"/>).
    /// </summary>
    public static bool TryReadNodeKey(ReadOnlySpan<byte> ticket, out Curve25519PublicKey nodeKey)
    {
        nodeKey = default;
        if (ticket.Length < 33 || ticket[0] != Version) return false;
        nodeKey = new Curve25519PublicKey(ticket.Slice(1, 32));
        return true;
    }

    /// <summary>Imports an issuer's 32-byte Ed25519 public key.</summary>
    public static PublicKey IssuerKey(ReadOnlySpan<byte> publicKey) => PublicKey.Import(Ed25519, publicKey, KeyBlobFormat.RawPublicKey);

    /// <summary>Imports a 32-byte Ed25519 private key (seed) for signing tickets.</summary>
    public static Key SigningKey(ReadOnlySpan<byte> seed) =>
        Key.Import(Ed25519, seed, KeyBlobFormat.RawPrivateKey, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });

    /// <summary>A new random signing key's 32-byte seed.</summary>
    public static byte[] NewSigningSeed()
    {
        using var key = Key.Create(Ed25519, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
        return key.Export(KeyBlobFormat.RawPrivateKey);
    }
}

/// <summary>Why a relay refused a ticket (counted per reason).</summary>
public enum TicketRefusal
{
    None,
    Malformed,
    UnknownVersion,
    BadSignature,
    Expired,
    /// <summary>A valid ticket, for another node key than the one the client proved it holds.</summary>
    WrongNodeKey,
}
