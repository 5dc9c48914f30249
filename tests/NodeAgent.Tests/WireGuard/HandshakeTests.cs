using System.Net;
using Weft.Contracts.Keys;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

/// <summary>The handshake messages between two in-memory sides, no network.</summary>
public class HandshakeTests
{
    private readonly ManualClock _clock = new();
    private readonly Curve25519PrivateKey _initiatorKey = Curve25519PrivateKey.Generate();
    private readonly Curve25519PrivateKey _responderKey = Curve25519PrivateKey.Generate();
    private readonly IndexTable _initiatorIndices = new();
    private readonly IndexTable _responderIndices = new();

    private (Peer ResponderAsSeenByInitiator, Peer InitiatorAsSeenByResponder) Peers(byte[]? psk = null)
    {
        var toResponder = new Peer(_responderKey.PublicKey, _initiatorIndices) { PresharedKey = psk ?? new byte[32] };
        var toInitiator = new Peer(_initiatorKey.PublicKey, _responderIndices) { PresharedKey = psk ?? new byte[32] };
        return (toResponder, toInitiator);
    }

    [Fact]
    public void Both_sides_derive_matching_transport_keys()
    {
        var (toResponder, toInitiator) = Peers();
        var initiation = new byte[Messages.InitiationSize];
        var pending = Handshake.CreateInitiation(_initiatorKey, toResponder, _initiatorIndices, _clock, initiation);

        var checker = new CookieChecker(_clock);
        checker.SetStaticKey(_responderKey.PublicKey);
        Assert.True(checker.CheckMac1(initiation, Messages.TypeInitiation));

        var consumed = Handshake.ConsumeInitiation(_responderKey, initiation);
        Assert.NotNull(consumed);
        Assert.Equal(_initiatorKey.PublicKey, consumed!.PeerKey);
        Assert.Equal(pending.LocalIndex, consumed.SenderIndex);

        var response = new byte[Messages.ResponseSize];
        var responderKeypair = Handshake.CreateResponse(consumed, toInitiator, _responderIndices, _clock, response);
        Assert.Equal(pending.LocalIndex, Messages.ReadIndex(response, Messages.ResponseReceiver));

        Assert.True(_initiatorIndices.TryGet(pending.LocalIndex, out var entry));
        var initiatorKeypair = Handshake.ConsumeResponse(pending, entry, response, _clock);
        Assert.NotNull(initiatorKeypair);
        Assert.Equal(responderKeypair.LocalIndex, initiatorKeypair!.RemoteIndex);

        var plaintext = "hello over wireguard"u8.ToArray();
        var sealedBytes = new byte[plaintext.Length + 16];
        initiatorKeypair.Seal(7, plaintext, sealedBytes);
        var opened = new byte[plaintext.Length];
        Assert.True(responderKeypair.Open(7, sealedBytes, opened));
        Assert.Equal(plaintext, opened);
        Assert.False(responderKeypair.Open(8, sealedBytes, opened));
    }

    [Fact]
    public void An_initiation_for_another_static_key_does_not_decrypt()
    {
        var (toResponder, _) = Peers();
        var initiation = new byte[Messages.InitiationSize];
        Handshake.CreateInitiation(_initiatorKey, toResponder, _initiatorIndices, _clock, initiation);

        using var stranger = Curve25519PrivateKey.Generate();
        Assert.Null(Handshake.ConsumeInitiation(stranger, initiation));
    }

    [Fact]
    public void A_forged_response_does_not_spoil_the_handshake_for_the_genuine_one()
    {
        var (toResponder, toInitiator) = Peers();
        var initiation = new byte[Messages.InitiationSize];
        var pending = Handshake.CreateInitiation(_initiatorKey, toResponder, _initiatorIndices, _clock, initiation);
        var response = new byte[Messages.ResponseSize];
        Handshake.CreateResponse(Handshake.ConsumeInitiation(_responderKey, initiation)!, toInitiator, _responderIndices, _clock, response);
        _initiatorIndices.TryGet(pending.LocalIndex, out var entry);

        var forged = (byte[])response.Clone();
        forged[20] ^= 0xff; // inside the ephemeral key
        Assert.Null(Handshake.ConsumeResponse(pending, entry, forged, _clock));
        Assert.NotNull(Handshake.ConsumeResponse(pending, entry, response, _clock));
    }

    [Fact]
    public void The_mac2_cookie_round_trip_works_and_binds_the_source_address()
    {
        var checker = new CookieChecker(_clock);
        checker.SetStaticKey(_responderKey.PublicKey);
        var (toResponder, _) = Peers();
        var source = new IPEndPoint(IPAddress.Parse("198.18.0.7"), 40000);

        var initiation = new byte[Messages.InitiationSize];
        Handshake.CreateInitiation(_initiatorKey, toResponder, _initiatorIndices, _clock, initiation);
        Assert.True(checker.CheckMac1(initiation, Messages.TypeInitiation));
        Assert.False(checker.CheckMac2(initiation, Messages.TypeInitiation, source));

        var reply = new byte[Messages.CookieReplySize];
        checker.CreateReply(initiation, Messages.TypeInitiation, source, reply);
        Assert.Equal(Messages.TypeCookieReply, Messages.TypeOf(reply));
        Assert.True(toResponder.Cookies.ConsumeReply(reply, _clock.NowMs));

        Handshake.CreateInitiation(_initiatorKey, toResponder, _initiatorIndices, _clock, initiation);
        Assert.True(checker.CheckMac2(initiation, Messages.TypeInitiation, source));
        Assert.False(checker.CheckMac2(initiation, Messages.TypeInitiation, new IPEndPoint(IPAddress.Parse("198.18.0.8"), 40000)));
        Assert.False(checker.CheckMac2(initiation, Messages.TypeInitiation, new IPEndPoint(IPAddress.Parse("198.18.0.7"), 40001)));

        var tampered = (byte[])initiation.Clone();
        tampered[5] ^= 0x20;
        Assert.False(checker.CheckMac1(tampered, Messages.TypeInitiation));

        // Cookies expire after 120 s.
        _clock.Advance(TimeSpan.FromSeconds(121));
        Handshake.CreateInitiation(_initiatorKey, toResponder, _initiatorIndices, _clock, initiation);
        Assert.False(checker.CheckMac2(initiation, Messages.TypeInitiation, source));
    }

    [Fact]
    public void A_cookie_reply_that_does_not_answer_our_last_message_is_refused()
    {
        var (toResponder, _) = Peers();
        var reply = new byte[Messages.CookieReplySize];
        Assert.False(toResponder.Cookies.ConsumeReply(reply, _clock.NowMs));
    }

    [Fact]
    public void The_rate_limiter_allows_a_burst_of_5_then_20_per_second()
    {
        var limiter = new RateLimiter(_clock);
        var source = IPAddress.Parse("198.18.0.9");
        var allowed = Enumerable.Range(0, 10).Count(_ => limiter.Allow(source));
        Assert.Equal(5, allowed);
        Assert.True(limiter.Allow(IPAddress.Parse("198.18.0.10")));

        _clock.Advance(TimeSpan.FromMilliseconds(100));
        Assert.Equal(2, Enumerable.Range(0, 10).Count(_ => limiter.Allow(source)));
    }
}
