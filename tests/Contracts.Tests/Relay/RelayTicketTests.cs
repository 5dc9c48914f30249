using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Contracts.Tests.Relay;

/// <summary>Relay tickets: what the cluster signs is what a relay reads back, and every forgery, expiry and malformed shape is refused with its reason.</summary>
public class RelayTicketTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000);

    private static (NSec.Cryptography.Key Signing, NSec.Cryptography.PublicKey Issuer) Issuer()
    {
        var signing = RelayTicket.SigningKey(RelayTicket.NewSigningSeed());
        return (signing, signing.PublicKey);
    }

    [Fact]
    public void A_signed_ticket_verifies_and_carries_its_node_key_tailnet_expiry_and_wire_form()
    {
        var (signing, issuer) = Issuer();
        using var node = Curve25519PrivateKey.Generate();
        var wire = new RelayTicket(node.PublicKey, "tn_acme", Now.AddHours(1)).Sign(signing);

        var read = RelayTicket.Verify(wire, [issuer], Now, out var refusal);

        Assert.Equal(TicketRefusal.None, refusal);
        Assert.NotNull(read);
        Assert.Equal(node.PublicKey, read.NodeKey);
        Assert.Equal("tn_acme", read.TailnetId);
        Assert.Equal(Now.AddHours(1), read.Expiry);
        Assert.Equal(wire, read.Signed); // what a relay shows the issuer when it asks about the ticket again
        Assert.NotSame(wire, read.Signed);
        Assert.True(RelayTicket.TryReadNodeKey(wire, out var named));
        Assert.Equal(node.PublicKey, named);
        Assert.False(RelayTicket.TryReadNodeKey(wire.AsSpan(0, 20), out _));
    }

    [Fact]
    public void An_expired_ticket_is_refused_as_expired()
    {
        var (signing, issuer) = Issuer();
        using var node = Curve25519PrivateKey.Generate();
        var wire = new RelayTicket(node.PublicKey, "tn", Now).Sign(signing);
        Assert.Null(RelayTicket.Verify(wire, [issuer], Now, out var refusal));
        Assert.Equal(TicketRefusal.Expired, refusal);
    }

    [Fact]
    public void A_ticket_signed_by_another_key_or_altered_after_signing_is_refused_as_a_bad_signature()
    {
        var (signing, issuer) = Issuer();
        var (forger, _) = Issuer();
        using var node = Curve25519PrivateKey.Generate();
        var forged = new RelayTicket(node.PublicKey, "tn", Now.AddHours(1)).Sign(forger);
        Assert.Null(RelayTicket.Verify(forged, [issuer], Now, out var refusal));
        Assert.Equal(TicketRefusal.BadSignature, refusal);

        var altered = new RelayTicket(node.PublicKey, "tn", Now.AddHours(1)).Sign(signing);
        altered[5] ^= 1; // another node key
        Assert.Null(RelayTicket.Verify(altered, [issuer], Now, out refusal));
        Assert.Equal(TicketRefusal.BadSignature, refusal);
    }

    [Fact]
    public void Any_of_several_issuers_may_sign_so_that_the_signing_key_can_be_rolled()
    {
        var (oldKey, oldIssuer) = Issuer();
        var (_, newIssuer) = Issuer();
        using var node = Curve25519PrivateKey.Generate();
        var wire = new RelayTicket(node.PublicKey, "tn", Now.AddHours(1)).Sign(oldKey);
        Assert.NotNull(RelayTicket.Verify(wire, [newIssuer, oldIssuer], Now, out _));
    }

    [Theory]
    [InlineData(0, TicketRefusal.Malformed)]
    [InlineData(41, TicketRefusal.Malformed)]
    [InlineData(105, TicketRefusal.Malformed)]
    [InlineData(400, TicketRefusal.Malformed)]
    public void Tickets_of_the_wrong_length_are_malformed(int length, TicketRefusal expected)
    {
        var (_, issuer) = Issuer();
        var bytes = new byte[length];
        if (length > 0) bytes[0] = RelayTicket.Version;
        Assert.Null(RelayTicket.Verify(bytes, [issuer], Now, out var refusal));
        Assert.Equal(expected, refusal);
    }

    [Fact]
    public void An_unknown_version_is_refused_by_name()
    {
        var (signing, issuer) = Issuer();
        using var node = Curve25519PrivateKey.Generate();
        var wire = new RelayTicket(node.PublicKey, "tn", Now.AddHours(1)).Sign(signing);
        wire[0] = 9;
        Assert.Null(RelayTicket.Verify(wire, [issuer], Now, out var refusal));
        Assert.Equal(TicketRefusal.UnknownVersion, refusal);
    }
}
