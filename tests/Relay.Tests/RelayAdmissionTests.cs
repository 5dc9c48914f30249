using System.Net;
using System.Net.Sockets;
using Weft.Contracts.Crypto;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay.Tests;

/// <summary>Only keys the cluster vouches for get in; bad input is refused with a counted reason and never stops the relay.</summary>
public class RelayAdmissionTests
{
    private static async Task<RelayProtocolException> Refused(RelayServer relay, Curve25519PrivateKey key, ClientInfo info)
    {
        return await Assert.ThrowsAsync<RelayProtocolException>(() => RelayClientConnection.ConnectAsync(RelayLab.AddressOf(relay), key, info, CancellationToken.None));
    }

    [Fact]
    public async Task Forged_expired_missing_and_borrowed_tickets_are_each_refused_with_their_reason()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        using var key = Curve25519PrivateKey.Generate();
        using var other = Curve25519PrivateKey.Generate();
        var forger = RelayTicket.SigningKey(RelayTicket.NewSigningSeed());

        await Refused(relay, key, new ClientInfo { Ticket = new RelayTicket(key.PublicKey, "tn", DateTimeOffset.UtcNow.AddHours(1)).Sign(forger) });
        await Refused(relay, key, new ClientInfo { Ticket = lab.Ticket(key.PublicKey, TimeSpan.FromSeconds(-1)) });
        await Refused(relay, key, new ClientInfo());
        await Refused(relay, key, new ClientInfo { Ticket = lab.Ticket(other.PublicKey) }); // someone else's ticket
        await Refused(relay, key, new ClientInfo { MeshKey = new string('a', 64) });          // a guessed mesh key

        Assert.Equal(1, relay.Counters.RefusedFor("ticket_bad_signature"));
        Assert.Equal(1, relay.Counters.RefusedFor("ticket_expired"));
        Assert.Equal(1, relay.Counters.RefusedFor("ticket_missing"));
        Assert.Equal(1, relay.Counters.RefusedFor("ticket_wrong_node_key"));
        Assert.Equal(1, relay.Counters.RefusedFor("bad_mesh_key"));
        Assert.Empty(relay.ConnectedKeys);
    }

    [Fact]
    public async Task A_revoked_node_key_is_disconnected_and_its_earlier_tickets_refused_while_a_later_ticket_gets_in()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        var (revoked, key) = await lab.Connect(relay);
        var (_, bystander) = await lab.Connect(relay);
        var earlier = lab.Ticket(key.PublicKey);

        // Revoked as the cluster does: every ticket issued until now (they expire within the ticket lifetime).
        relay.Revoke(key.PublicKey, DateTimeOffset.UtcNow + TimeSpan.FromHours(1) + TimeSpan.FromSeconds(1));

        var health = await RelayLab.NextFrame(revoked, RelayFrameType.Health);
        Assert.Contains("revoked", System.Text.Encoding.UTF8.GetString(health!));
        Assert.True(await RelayLab.Eventually(() => !relay.ConnectedKeys.Contains(key.PublicKey)), "the revoked key's connection closed");
        Assert.Contains(bystander.PublicKey, relay.ConnectedKeys);
        var refused = await Refused(relay, key, new ClientInfo { Ticket = earlier });
        Assert.Contains("revoked", refused.Message);
        Assert.Equal(1, relay.Counters.RefusedFor("ticket_revoked"));
        Assert.Equal(1, relay.Counters.RefusedFor("ticket_revoked_in_session"));

        // The device registered again afterwards: its new ticket lives past the revoked ones and gets in.
        var later = new RelayTicket(key.PublicKey, "tn_test", DateTimeOffset.UtcNow + TimeSpan.FromHours(2)).Sign(lab.Issuer);
        await using var back = await RelayClientConnection.ConnectAsync(RelayLab.AddressOf(relay), key, new ClientInfo { Ticket = later }, CancellationToken.None);
        Assert.True(await RelayLab.Eventually(() => relay.ConnectedKeys.Contains(key.PublicKey)));
    }

    [Fact]
    public async Task A_ticket_whose_key_the_issuer_no_longer_vouches_for_is_refused_and_a_check_that_cannot_answer_lets_it_in()
    {
        using var gone = Curve25519PrivateKey.Generate();
        using var unanswered = Curve25519PrivateKey.Generate();
        await using var lab = new RelayLab(); // closes its connections before the keys go
        var asked = new System.Collections.Concurrent.ConcurrentQueue<Curve25519PublicKey>();
        var relay = lab.StartRelay(configure: options => options with
        {
            AccessCheckTimeout = TimeSpan.FromMilliseconds(300),
            AccessCheck = RelayLab.EachTicket(async (ticket, cancel) =>
            {
                asked.Enqueue(ticket.NodeKey);
                if (ticket.NodeKey == unanswered.PublicKey) await Task.Delay(Timeout.Infinite, cancel); // the check as a whole times out
                return ticket.NodeKey != gone.PublicKey;
            }),
        });

        // Signed, unexpired and never revoked here: only the issuer's records say the key is out.
        var refused = await Refused(relay, gone, new ClientInfo { Ticket = lab.Ticket(gone.PublicKey) });
        Assert.Contains("revoked", refused.Message);
        await Refused(relay, gone, new ClientInfo { Ticket = lab.Ticket(gone.PublicKey, TimeSpan.FromMinutes(30)) });
        Assert.Equal(2, relay.Counters.RefusedFor("ticket_revoked"));
        Assert.Single(asked, gone.PublicKey); // the second ticket expires before the first: refused without asking again

        var (_, vouched) = await lab.Connect(relay);
        Assert.Contains(vouched.PublicKey, relay.ConnectedKeys);

        // The cluster is busy moving the tailnet: the relay stays a fallback path, and says so.
        await lab.Connect(relay, unanswered);
        Assert.Contains(unanswered.PublicKey, relay.ConnectedKeys);
        Assert.Equal(1, relay.Counters.AccessesUnconfirmed);
        Assert.Equal(3, asked.Count);
    }

    [Fact]
    public async Task A_storm_of_logins_shares_a_few_asks_of_the_issuer_and_each_login_still_gets_its_own_answer()
    {
        // A relay restart brings its clients back at once. One ask per login would meet the coordinator's
        // per-address rate limit, and each refused ask would let its login in on the signature alone.
        const int logins = 200;
        var calls = 0;
        var asked = 0;
        await using var lab = new RelayLab();
        var keys = Enumerable.Range(0, logins).Select(_ => Curve25519PrivateKey.Generate()).ToList();
        var revoked = keys.Where((_, i) => i % 10 == 0).Select(k => k.PublicKey).ToHashSet();
        var relay = lab.StartRelay(configure: options => options with
        {
            AccessCheck = (tickets, _) =>
            {
                Interlocked.Increment(ref calls);
                Interlocked.Add(ref asked, tickets.Count);
                return Task.FromResult<IReadOnlyList<bool?>>([.. tickets.Select(t => (bool?)!revoked.Contains(t.NodeKey))]);
            },
        });

        var clients = new List<RelayClientConnection>();
        var outcomes = await Task.WhenAll(keys.Select(async key =>
        {
            try
            {
                var client = await RelayClientConnection.ConnectAsync(RelayLab.AddressOf(relay), key, new ClientInfo { Ticket = lab.Ticket(key.PublicKey) }, CancellationToken.None);
                lock (clients) clients.Add(client);
                return (key.PublicKey, Refusal: (string?)null);
            }
            catch (RelayProtocolException refused)
            {
                return (key.PublicKey, Refusal: refused.Message);
            }
        }));

        Assert.All(outcomes, o => Assert.Equal(revoked.Contains(o.PublicKey), o.Refusal?.Contains("revoked") == true));
        Assert.Equal(logins - revoked.Count, relay.ConnectedKeys.Count);
        Assert.Equal(logins, asked); // every login asked about, each once
        Assert.True(calls <= logins / 5, $"{calls} asks of the issuer for {logins} logins at once");
        Assert.Equal(calls, relay.LoginCheckBatches);
        foreach (var client in clients) await client.DisposeAsync();
    }

    [Fact]
    public async Task Live_connections_are_asked_about_again_and_one_whose_key_lost_access_closes_while_an_unanswered_check_keeps_its_connection()
    {
        using var gone = Curve25519PrivateKey.Generate();
        using var unanswered = Curve25519PrivateKey.Generate();
        await using var lab = new RelayLab();
        var outNow = new System.Collections.Concurrent.ConcurrentDictionary<Curve25519PublicKey, byte>();
        var silentNow = new System.Collections.Concurrent.ConcurrentDictionary<Curve25519PublicKey, byte>();
        var asked = new System.Collections.Concurrent.ConcurrentQueue<Curve25519PublicKey>();
        var relay = lab.StartRelay(configure: options => options with
        {
            AccessCheckTimeout = TimeSpan.FromMilliseconds(300),
            AccessRecheckInterval = TimeSpan.FromMilliseconds(200),
            AccessCheck = RelayLab.EachTicket(async (ticket, cancel) =>
            {
                asked.Enqueue(ticket.NodeKey);
                await Task.Yield();
                // One tailnet's entity is moving: the issuer cannot tell about its keys, and answers for the others.
                return silentNow.ContainsKey(ticket.NodeKey) ? null : !outNow.ContainsKey(ticket.NodeKey);
            }),
        });
        var goneTicket = lab.Ticket(gone.PublicKey);
        var goneClient = await RelayClientConnection.ConnectAsync(RelayLab.AddressOf(relay), gone, new ClientInfo { Ticket = goneTicket }, CancellationToken.None);
        await using (goneClient)
        {
            await lab.Connect(relay, unanswered);
            var (_, stays) = await lab.Connect(relay);
            Assert.True(await RelayLab.Eventually(() => asked.Count(key => key == stays.PublicKey) >= 2), "the live connections are asked about again");
            Assert.Equal(3, relay.ConnectedKeys.Count);

            // The issuer's records change with no revocation heard here (this relay was cut off, or the key was rotated away).
            silentNow[unanswered.PublicKey] = 0;
            outNow[gone.PublicKey] = 0;
            var health = await RelayLab.NextFrame(goneClient, RelayFrameType.Health);
            Assert.Contains("revoked", System.Text.Encoding.UTF8.GetString(health!));
            Assert.True(await RelayLab.Eventually(() => !relay.ConnectedKeys.Contains(gone.PublicKey)), "the connection of the key that lost access closed");
            Assert.True(await RelayLab.Eventually(() => relay.Counters.AccessesUnconfirmed >= 2), "unanswered checks are counted");
            Assert.Contains(unanswered.PublicKey, relay.ConnectedKeys); // the cluster is busy: the relay stays a fallback path
            Assert.Contains(stays.PublicKey, relay.ConnectedKeys);
            Assert.Equal(1, relay.Counters.RefusedFor("ticket_revoked_on_recheck"));
        }

        // Remembered as a revocation: the same ticket is refused at once, without asking again.
        var askedBefore = asked.Count(key => key == gone.PublicKey);
        var refused = await Refused(relay, gone, new ClientInfo { Ticket = goneTicket });
        Assert.Contains("revoked", refused.Message);
        Assert.Equal(askedBefore, asked.Count(key => key == gone.PublicKey));
        Assert.Equal(1, relay.Counters.RefusedFor("ticket_revoked"));
    }

    [Fact]
    public async Task A_login_refused_because_the_key_lost_access_closes_that_keys_live_connection_too()
    {
        // A separate relay hears no revocation. The device was deleted while its connection stayed up; then the agent
        // dials again (it roamed, or its connection went quiet) with the ticket it holds. The refusal marks the ticket
        // as revoked, and the sweep passes over revoked connections as closing already: so the refusal itself must close
        // the live connection, or it would stay up until its ticket expires (an hour by default).
        using var key = Curve25519PrivateKey.Generate();
        await using var lab = new RelayLab();
        var vouched = true;
        var relay = lab.StartRelay(configure: options => options with
        {
            AccessRecheckInterval = TimeSpan.FromHours(1), // no sweep within the test: only the refused login can close it
            AccessCheck = RelayLab.EachTicket((ticket, _) => Task.FromResult<bool?>(Volatile.Read(ref vouched))),
        });
        var ticket = lab.Ticket(key.PublicKey);
        var live = await RelayClientConnection.ConnectAsync(RelayLab.AddressOf(relay), key, new ClientInfo { Ticket = ticket }, CancellationToken.None);
        await using (live)
        {
            Assert.Contains(key.PublicKey, relay.ConnectedKeys);
            Volatile.Write(ref vouched, false);

            var refused = await Refused(relay, key, new ClientInfo { Ticket = ticket });
            Assert.Contains("revoked", refused.Message);
            var health = await RelayLab.NextFrame(live, RelayFrameType.Health);
            Assert.Contains("revoked", System.Text.Encoding.UTF8.GetString(health!));
            Assert.True(await RelayLab.Eventually(() => !relay.ConnectedKeys.Contains(key.PublicKey)), "the live connection of the key that lost access closed");
            Assert.Equal(1, relay.Counters.RefusedFor("ticket_revoked_at_login"));
        }
    }

    [Fact]
    public async Task A_sweep_of_the_live_connections_that_fails_is_counted_and_the_next_sweep_still_runs()
    {
        await using var lab = new RelayLab();
        var calls = 0;
        var relay = lab.StartRelay(configure: options => options with
        {
            AccessRecheckInterval = TimeSpan.FromMilliseconds(200),
            AccessCheck = (tickets, _) => Task.FromResult<IReadOnlyList<bool?>>(Interlocked.Increment(ref calls) switch
            {
                1 => [true],                                  // the login
                2 => new AnswersThatFailToRead(tickets.Count), // the first sweep breaks inside the relay
                _ => [.. tickets.Select(_ => (bool?)false)],   // then the key is out
            }),
        });
        var (_, key) = await lab.Connect(relay);

        Assert.True(await RelayLab.Eventually(() => !relay.ConnectedKeys.Contains(key.PublicKey)), "a later sweep closed the connection");
        Assert.Equal(1, relay.Counters.AccessRecheckFailures);
        Assert.Equal(1, relay.Counters.RefusedFor("ticket_revoked_on_recheck"));
    }

    [Fact]
    public async Task One_address_holds_a_bounded_number_of_connections_before_logging_in_or_after_and_a_closed_one_makes_room()
    {
        // Sockets that never log in cost the relay (and the coordinator it shares a process with) their buffers for
        // 10 s each; a host opening them without end would run the process out of file descriptors.
        await using var lab = new RelayLab();
        var relay = lab.StartRelay(configure: options => options with { MaxConnectionsPerAddress = 3 });
        var (client, key) = await lab.Connect(relay); // one logged in
        var idle = new List<System.Net.Sockets.TcpClient>();
        try
        {
            for (var i = 0; i < 4; i++)
            {
                var socket = new System.Net.Sockets.TcpClient();
                await socket.ConnectAsync(IPAddress.Loopback, relay.LocalEndpoint.Port);
                idle.Add(socket);
            }
            // Two more were held; the last two were closed on arrival, and counted.
            Assert.True(await RelayLab.Eventually(() => relay.Counters.RefusedFor("too_many_connections_from_address") == 2), "the connections past the limit refused");
            Assert.Equal(0, await ReadOrClosed(idle[3]));
            Assert.Equal(0, await ReadOrClosed(idle[2]));
            Assert.Contains(key.PublicKey, relay.ConnectedKeys); // the logged-in one is untouched

            // One of the held ones goes: a new connection (a client logging in) gets its place.
            idle[0].Dispose();
            await Task.Delay(200);
            var (_, second) = await lab.Connect(relay);
            Assert.True(await RelayLab.Eventually(() => relay.ConnectedKeys.Contains(second.PublicKey)));
        }
        finally
        {
            foreach (var socket in idle) socket.Dispose();
        }
    }

    /// <summary>What a read gets within 5 s: 0 when the relay closed the connection.</summary>
    private static async Task<int> ReadOrClosed(System.Net.Sockets.TcpClient socket)
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            return await socket.GetStream().ReadAsync(new byte[16], limit.Token);
        }
        catch (IOException)
        {
            return 0; // reset
        }
    }

    /// <summary>An answer of the right length that throws when read: a fault inside a sweep, after the check itself answered.</summary>
    private sealed class AnswersThatFailToRead(int count) : IReadOnlyList<bool?>
    {
        public int Count => count;
        public bool? this[int index] => throw new InvalidOperationException("a fault while reading the answers");
        public IEnumerator<bool?> GetEnumerator() => throw new InvalidOperationException("a fault while reading the answers");
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    [Fact]
    public async Task A_refused_key_cannot_be_reached_through_the_relay()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        var (alice, _) = await lab.Connect(relay);
        using var intruder = Curve25519PrivateKey.Generate();
        await Refused(relay, intruder, new ClientInfo());
        alice.TrySend(intruder.PublicKey, "secret"u8);
        Assert.True(await RelayLab.Eventually(() => relay.Counters.DroppedFor("unknown_destination") == 1));
        Assert.Equal(0, relay.Counters.PacketsForwarded);
    }

    [Fact]
    public async Task A_login_sealed_with_another_key_than_the_one_it_names_is_refused()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        using var claimed = Curve25519PrivateKey.Generate();
        using var actual = Curve25519PrivateKey.Generate();
        var stream = await RawLogin(relay);
        var serverKey = await ReadServerKey(stream);
        using var box = SealedBox.Between(actual, serverKey)!;
        var body = RelayLoginJson.Serialize(new ClientInfo { Ticket = lab.Ticket(claimed.PublicKey) });
        await stream.WriteAsync(RelayFrame.Build(RelayFrameType.ClientInfo, [.. claimed.PublicKey.ToArray(), .. box.Seal(body)]));
        Assert.True(await RelayLab.Eventually(() => relay.Counters.RefusedFor("bad_login_box") == 1));
    }

    [Theory]
    [InlineData("garbage preface", "unknown_preface")]
    [InlineData("oversized login", "oversized_frame")]
    [InlineData("wrong first frame", "expected_login")]
    [InlineData("a big first frame's header alone", "expected_login")] // refused from its header: its 64 KiB are never waited for nor held
    [InlineData("short login", "bad_login")]
    [InlineData("json garbage", "bad_login")]
    public async Task Malformed_connections_are_refused_by_reason_and_the_relay_keeps_serving(string shape, string reason)
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        using var key = Curve25519PrivateKey.Generate();
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", relay.LocalEndpoint.Port);
        var stream = tcp.GetStream();
        if (shape == "garbage preface")
        {
            await stream.WriteAsync("\0\0\0\0\0\0\0\0\0\0"u8.ToArray());
        }
        else
        {
            await stream.WriteAsync(RelayFrame.Magic.ToArray());
            var serverKey = await ReadServerKey(stream);
            byte[] frame = shape switch
            {
                "oversized login" => Header(RelayFrameType.ClientInfo, RelayFrame.MaxLoginSize + 1),
                "wrong first frame" => RelayFrame.Build(RelayFrameType.SendPacket, key.PublicKey, "x"u8),
                "a big first frame's header alone" => Header((RelayFrameType)0x7F, RelayFrame.MaxFrameSize),
                "short login" => RelayFrame.Build(RelayFrameType.ClientInfo, new byte[10]),
                _ => Sealed(key, serverKey, "{{{"u8.ToArray()),
            };
            await stream.WriteAsync(frame);
        }
        Assert.True(await RelayLab.Eventually(() => relay.Counters.RefusedFor(reason) == 1), $"expected {reason}");

        // Still serving.
        var (alice, _) = await lab.Connect(relay);
        var (bob, bobKey) = await lab.Connect(relay);
        alice.TrySend(bobKey.PublicKey, "ok"u8);
        Assert.NotNull(await RelayLab.NextPacket(bob));
    }

    [Fact]
    public async Task After_login_an_oversized_frame_closes_only_that_connection_and_unknown_types_and_mesh_frames_are_skipped_and_counted()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        var (alice, _) = await lab.Connect(relay);
        var (bob, bobKey) = await lab.Connect(relay);
        alice.TrySendFrame(RelayFrame.Build((RelayFrameType)0x7e, [1, 2, 3]));
        alice.TrySendFrame(RelayFrame.Build(RelayFrameType.WatchConns, []));
        alice.TrySendFrame(RelayFrame.BuildForward(bobKey.PublicKey, bobKey.PublicKey, "x"u8));
        alice.TrySend(bobKey.PublicKey, "after"u8);
        Assert.Equal("after", System.Text.Encoding.UTF8.GetString((await RelayLab.NextPacket(bob))!.Value.Packet));
        Assert.Equal(1, relay.Counters.DroppedFor("unknown_frame_type"));
        Assert.Equal(2, relay.Counters.DroppedFor("mesh_frame_from_client"));

        alice.TrySendFrame(Header(RelayFrameType.SendPacket, RelayFrame.KeySize + RelayFrame.MaxPacketSize + 1));
        Assert.True(await RelayLab.Eventually(() => relay.Counters.RefusedFor("oversized_frame") == 1));
        Assert.True(await RelayLab.Eventually(() => relay.ConnectedKeys.Count == 1));
    }

    [Fact]
    public async Task A_session_ends_when_its_ticket_expires_so_a_revoked_device_cannot_stay_on_the_relay()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay(configure: o => o with { KeepAliveInterval = TimeSpan.FromMilliseconds(200) });
        using var key = Curve25519PrivateKey.Generate();
        var client = await RelayClientConnection.ConnectAsync(RelayLab.AddressOf(relay), key,
            new ClientInfo { Ticket = lab.Ticket(key.PublicKey, TimeSpan.FromSeconds(2)) }, CancellationToken.None);
        await using (client)
        {
            Assert.Contains(key.PublicKey, relay.ConnectedKeys);
            Assert.True(await RelayLab.Eventually(() => !relay.ConnectedKeys.Contains(key.PublicKey), TimeSpan.FromSeconds(8)));
            Assert.Equal(1, relay.Counters.RefusedFor("ticket_expired_in_session"));
        }
    }

    private static byte[] Header(RelayFrameType type, int length)
    {
        var header = new byte[RelayFrame.HeaderSize];
        RelayFrame.WriteHeader(header, type, length);
        return header;
    }

    private static byte[] Sealed(Curve25519PrivateKey key, Curve25519PublicKey serverKey, byte[] body)
    {
        using var box = SealedBox.Between(key, serverKey)!;
        return RelayFrame.Build(RelayFrameType.ClientInfo, [.. key.PublicKey.ToArray(), .. box.Seal(body)]);
    }

    private static async Task<NetworkStream> RawLogin(RelayServer relay)
    {
        var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", relay.LocalEndpoint.Port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(RelayFrame.Magic.ToArray());
        return stream;
    }

    private static async Task<Curve25519PublicKey> ReadServerKey(Stream stream)
    {
        var frame = await new RelayFrameReader(stream).ReadAsync(CancellationToken.None);
        Assert.Equal(RelayFrameType.ServerKey, frame!.Value.Type);
        return new Curve25519PublicKey(frame.Value.Payload.AsSpan(RelayFrame.Magic.Length, 32));
    }
}
