using Akka.Actor;
using Microsoft.Extensions.DependencyInjection;
using Weft.Cluster.Relays;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Paths;
using Weft.NodeAgent.WireGuard;
using Weft.Relay;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>
/// The coordinator's relays as agents meet them: the relay map and a ticket over the control stream,
/// the embedded relay admitting exactly the keys the cluster vouches for, a new ticket after a key
/// rotation, and agents that can only meet through the relay keeping their traffic when their relay
/// client, their path manager or their control client is killed.
/// </summary>
public class RelayTests
{
    [Fact]
    public async Task An_agent_gets_the_relay_map_and_a_ticket_that_admits_its_own_node_key_to_the_embedded_relay_and_no_other()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet("relays")).Id;
        using var a = TestAgent.Start(agents, [node.Control], "a", (await node.Http.CreateAuthKey(tailnet)).Key);
        var access = await Eventually.Until(() => Task.FromResult(a.RelayAccess), x => x is not null, "a's relay access");

        var relay = node.Services.GetRequiredService<EmbeddedRelay>().Server!;
        var region = Assert.Single(access!.Map.Regions);
        var relayNode = Assert.Single(region.Nodes);
        Assert.Equal(relay.LocalEndpoint.Port, relayNode.Port);
        Assert.Equal(relay.StunEndpoint!.Port, relayNode.StunPort);
        Assert.Equal("", relayNode.Host); // the host the agent dialled for control
        Assert.Equal(node.Control.Host, access.ControlHost);

        var issuer = node.Services.GetRequiredService<RelayTicketIssuer>();
        var ticket = RelayTicket.Verify(access.Ticket, [issuer.IssuerKey], DateTimeOffset.UtcNow, out var refusal);
        Assert.Equal(TicketRefusal.None, refusal);
        using var nodeKey = Curve25519PrivateKey.TryParseHex(a.Store.Load().NodePrivateKey, out var parsed) ? parsed : throw new InvalidOperationException();
        Assert.Equal(nodeKey.PublicKey, ticket!.NodeKey);
        Assert.Equal(tailnet, ticket.TailnetId);
        Assert.True(ticket.Expiry > DateTimeOffset.UtcNow.AddMinutes(30));

        var address = new RelayNodeAddress(access.ControlHost, relayNode.Port);
        await using (await RelayClientConnection.ConnectAsync(address, nodeKey, new ClientInfo { Ticket = access.Ticket }, CancellationToken.None))
            Assert.Contains(nodeKey.PublicKey, relay.ConnectedKeys);
        using var stranger = Curve25519PrivateKey.Generate();
        await Assert.ThrowsAsync<RelayProtocolException>(() => RelayClientConnection.ConnectAsync(address, stranger, new ClientInfo { Ticket = access.Ticket }, CancellationToken.None));
        Assert.Equal(1, relay.Counters.RefusedFor("ticket_wrong_node_key"));
    }

    [Fact]
    public async Task Deleting_or_expiring_a_device_closes_its_relay_connection_and_its_ticket_no_longer_gets_in()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet("revoke")).Id;
        var authKey = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        var relay = node.Services.GetRequiredService<EmbeddedRelay>().Server!;
        using var deleted = TestAgent.Start(agents, [node.Control], "deleted", authKey);
        using var expired = TestAgent.Start(agents, [node.Control], "expired", authKey);
        using var stays = TestAgent.Start(agents, [node.Control], "stays", authKey);

        // Each holds a relay connection on its own ticket (as its relay client would).
        await using var deletedHeld = await HoldRelayConnection(deleted);
        await using var expiredHeld = await HoldRelayConnection(expired);
        await using var staysHeld = await HoldRelayConnection(stays);
        await Eventually.Until(() => Task.FromResult(relay.ConnectedKeys.Count), n => n == 3, "three relay connections");

        Assert.Equal(System.Net.HttpStatusCode.NoContent, (await node.Http.DeleteAsync($"/api/v1/tailnets/{tailnet}/devices/{deleted.DeviceId}")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await node.Http.PostAsync($"/api/v1/tailnets/{tailnet}/devices/{expired.DeviceId}/expire", null)).StatusCode);

        // Before, both stayed connected, and their tickets let them in again for up to an hour.
        await Eventually.Until(() => Task.FromResult(relay.ConnectedKeys), keys => !keys.Contains(deletedHeld.Key.PublicKey) && !keys.Contains(expiredHeld.Key.PublicKey),
            "the deleted and the expired device's relay connections closed");
        Assert.Contains(staysHeld.Key.PublicKey, relay.ConnectedKeys);
        foreach (var revoked in new[] { deletedHeld, expiredHeld })
        {
            var refused = await Assert.ThrowsAsync<RelayProtocolException>(() =>
                RelayClientConnection.ConnectAsync(revoked.Address, revoked.Key, new ClientInfo { Ticket = revoked.Ticket }, CancellationToken.None));
            Assert.Contains("revoked", refused.Message);
        }
        Assert.Equal(2, relay.Counters.RefusedFor("ticket_revoked_in_session"));
        Assert.Equal(2, relay.Counters.RefusedFor("ticket_revoked"));
    }

    [Fact]
    public async Task A_restarted_coordinator_still_refuses_the_tickets_of_devices_deleted_or_expired_before_it_stopped()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var agents = new AgentSystem();
        var node = await TestCoordinator.StartAsync(storage);
        RelayCredentials deleted, expired, stays;
        try
        {
            var tailnet = (await node.Http.CreateTailnet("revoke-restart")).Id;
            var authKey = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
            using var deletedAgent = TestAgent.Start(agents, [node.Control], "deleted", authKey);
            using var expiredAgent = TestAgent.Start(agents, [node.Control], "expired", authKey);
            using var staysAgent = TestAgent.Start(agents, [node.Control], "stays", authKey);
            (deleted, expired, stays) = (await CredentialsOf(deletedAgent), await CredentialsOf(expiredAgent), await CredentialsOf(staysAgent));
            Assert.Equal(System.Net.HttpStatusCode.NoContent, (await node.Http.DeleteAsync($"/api/v1/tailnets/{tailnet}/devices/{deletedAgent.DeviceId}")).StatusCode);
            Assert.Equal(System.Net.HttpStatusCode.OK, (await node.Http.PostAsync($"/api/v1/tailnets/{tailnet}/devices/{expiredAgent.DeviceId}/expire", null)).StatusCode);
        }
        finally
        {
            await node.DisposeAsync();
        }

        // The revocations this node heard went with its process; the tailnet's records did not.
        await using var restarted = await TestCoordinator.StartAsync(storage);
        var relay = restarted.Services.GetRequiredService<EmbeddedRelay>().Server!;
        var address = new RelayNodeAddress("127.0.0.1", relay.LocalEndpoint.Port);
        await using (await RelayClientConnection.ConnectAsync(address, stays.Key, new ClientInfo { Ticket = stays.Ticket }, CancellationToken.None))
            Assert.Contains(stays.Key.PublicKey, relay.ConnectedKeys); // a ticket from before the restart still holds
        foreach (var revoked in new[] { deleted, expired })
        {
            var refused = await Assert.ThrowsAsync<RelayProtocolException>(() =>
                RelayClientConnection.ConnectAsync(address, revoked.Key, new ClientInfo { Ticket = revoked.Ticket }, CancellationToken.None));
            Assert.Contains("revoked", refused.Message);
        }
        Assert.Equal(2, relay.Counters.RefusedFor("ticket_revoked"));
        Assert.Equal(0, relay.Counters.AccessesUnconfirmed);
        foreach (var credentials in new[] { deleted, expired, stays }) credentials.Key.Dispose();
    }

    [Fact]
    public async Task A_separate_relay_asks_a_coordinator_so_a_deleted_devices_live_connection_closes_and_its_ticket_is_refused_even_after_the_relay_restarts()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet("separate-relay")).Id;
        var authKey = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        using var deletedAgent = TestAgent.Start(agents, [node.Control], "deleted", authKey);
        using var staysAgent = TestAgent.Start(agents, [node.Control], "stays", authKey);
        var (deleted, stays) = (await CredentialsOf(deletedAgent), await CredentialsOf(staysAgent));

        // As `weft-relay --ticket-issuer <the cluster's> --access-check-url <a coordinator that is down> --access-check-url <this one>` runs it.
        var issuer = node.Services.GetRequiredService<RelayTicketIssuer>();
        using var coordinators = new CoordinatorAccessCheck([new Uri("http://127.0.0.1:1"), node.Http.BaseAddress!]);
        RelayServer StartSeparateRelay() => Started(new RelayServer(new RelayOptions
        {
            Listen = new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0),
            Stun = null,
            ServerKey = Curve25519PrivateKey.Generate(),
            TicketIssuers = [issuer.IssuerKey],
            AccessCheck = coordinators.StillHaveAccessAsync,
            AccessRecheckInterval = TimeSpan.FromSeconds(1),
        }));
        var relay = StartSeparateRelay();
        await using (relay)
        {
            var address = new RelayNodeAddress("127.0.0.1", relay.LocalEndpoint.Port);
            await using var deletedHeld = await RelayClientConnection.ConnectAsync(address, deleted.Key, new ClientInfo { Ticket = deleted.Ticket }, CancellationToken.None);
            await using var staysHeld = await RelayClientConnection.ConnectAsync(address, stays.Key, new ClientInfo { Ticket = stays.Ticket }, CancellationToken.None);
            Assert.Equal(2, relay.ConnectedKeys.Count);

            Assert.Equal(System.Net.HttpStatusCode.NoContent, (await node.Http.DeleteAsync($"/api/v1/tailnets/{tailnet}/devices/{deletedAgent.DeviceId}")).StatusCode);

            // This relay hears no revocation; its next check of its live connections asks the coordinator.
            await Eventually.Until(() => Task.FromResult(relay.ConnectedKeys), keys => !keys.Contains(deleted.Key.PublicKey), "the deleted device's connection to the separate relay closed");
            Assert.Contains(stays.Key.PublicKey, relay.ConnectedKeys);
            // Only the second coordinator could have said so: the first is down, and was passed over.
            Assert.Equal(1, relay.Counters.RefusedFor("ticket_revoked_on_recheck"));
        }

        // A restarted relay remembers nothing, and asks at login.
        await using var restarted = StartSeparateRelay();
        var restartedAddress = new RelayNodeAddress("127.0.0.1", restarted.LocalEndpoint.Port);
        var refused = await Assert.ThrowsAsync<RelayProtocolException>(() =>
            RelayClientConnection.ConnectAsync(restartedAddress, deleted.Key, new ClientInfo { Ticket = deleted.Ticket }, CancellationToken.None));
        Assert.Contains("revoked", refused.Message);
        await using (await RelayClientConnection.ConnectAsync(restartedAddress, stays.Key, new ClientInfo { Ticket = stays.Ticket }, CancellationToken.None))
            Assert.Contains(stays.Key.PublicKey, restarted.ConnectedKeys);
        Assert.Equal(1, restarted.Counters.RefusedFor("ticket_revoked"));
        Assert.Equal(0, restarted.Counters.AccessesUnconfirmed);
        foreach (var credentials in new[] { deleted, stays }) credentials.Key.Dispose();
    }

    private static RelayServer Started(RelayServer relay)
    {
        relay.Start();
        return relay;
    }

    [Fact]
    public async Task The_relay_access_query_answers_each_ticket_and_refuses_malformed_or_foreign_ones_with_a_specific_error()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet("relay-access")).Id;
        using var agent = TestAgent.Start(agents, [node.Control], "a", (await node.Http.CreateAuthKey(tailnet)).Key);
        var held = await CredentialsOf(agent);
        var issuer = node.Services.GetRequiredService<RelayTicketIssuer>();
        using var stranger = Curve25519PrivateKey.Generate();
        var now = DateTimeOffset.UtcNow;
        byte[] Signed(Curve25519PublicKey key, string tailnetId, DateTimeOffset issuedAt) => issuer.Issue(key, tailnetId, issuedAt, null, withMap: false).Ticket.ToByteArray();
        using var relayClient = TestCoordinator.NewClient(node.Http.BaseAddress!, apiKey: null); // no API key: the tickets are the credentials

        async Task<HttpResponseMessage> Ask(string json) =>
            await relayClient.PostAsync(RelayAccessQuery.Path, new StringContent(json, System.Text.Encoding.UTF8, "application/json"));
        string Query(params byte[][] tickets) => System.Text.Json.JsonSerializer.Serialize(new RelayAccessQuery { Tickets = tickets });

        var answered = await Ask(Query(
            held.Ticket,                                           // its device holds the key
            Signed(stranger.PublicKey, tailnet, now),              // signed, but no device of the tailnet holds the key
            Signed(held.Key.PublicKey, tailnet, now.AddHours(-2)), // expired
            Signed(held.Key.PublicKey, "tn_neverexisted", now)));  // a tailnet that does not exist
        Assert.Equal(System.Net.HttpStatusCode.OK, answered.StatusCode);
        var answer = RelayAccessAnswer.Parse(await answered.Content.ReadAsByteArrayAsync(), 4);
        Assert.Equal([true, false, false, false], answer.Allowed);

        var forged = new RelayTicket(held.Key.PublicKey, tailnet, now.AddHours(1)).Sign(RelayTicket.SigningKey(RelayTicket.NewSigningSeed()));
        foreach (var (body, expected, says) in new[]
        {
            ("not json", ApiErrorCodes.MalformedJson, "not valid JSON"),
            ("{}", ApiErrorCodes.InvalidRequest, "'tickets'"),
            ("{\"tickets\": \"abc\"}", ApiErrorCodes.InvalidRequest, "array"),
            ("{\"tickets\": [], \"tailnet\": \"x\"}", ApiErrorCodes.InvalidRequest, "unknown field"),
            ("{\"tickets\": [\"!!!\"]}", ApiErrorCodes.InvalidRequest, "tickets[0] is not a base64 relay ticket"),
            (Query(held.Ticket, forged), ApiErrorCodes.InvalidRequest, "tickets[1] is refused (BadSignature)"),
            (Query([.. Enumerable.Repeat(held.Ticket, RelayAccessQuery.MaxTickets + 1)]), ApiErrorCodes.InvalidRequest, $"the limit is {RelayAccessQuery.MaxTickets}"),
        })
        {
            var error = await (await Ask(body)).ReadError(System.Net.HttpStatusCode.BadRequest);
            Assert.Equal(expected, error.Code);
            Assert.Contains(says, error.Message);
        }
        held.Key.Dispose();
    }

    /// <summary>A relay connection on the agent's node key and ticket, as its relay client would hold one.</summary>
    private static async Task<HeldRelayConnection> HoldRelayConnection(TestAgent agent)
    {
        var (key, ticket, address) = await CredentialsOf(agent);
        var connection = await RelayClientConnection.ConnectAsync(address, key, new ClientInfo { Ticket = ticket }, CancellationToken.None);
        return new HeldRelayConnection(connection, key, ticket, address);
    }

    /// <summary>The agent's node key, the relay ticket its session gave it, and the relay the ticket is for.</summary>
    private static async Task<RelayCredentials> CredentialsOf(TestAgent agent)
    {
        var access = (await Eventually.Until(() => Task.FromResult(agent.RelayAccess), x => x is not null, $"{agent.Hostname}'s relay access"))!;
        var key = Curve25519PrivateKey.TryParseHex(agent.Store.Load().NodePrivateKey, out var parsed) ? parsed : throw new InvalidOperationException();
        return new RelayCredentials(key, access.Ticket, new RelayNodeAddress(access.ControlHost, Assert.Single(Assert.Single(access.Map.Regions).Nodes).Port));
    }

    private sealed record RelayCredentials(Curve25519PrivateKey Key, byte[] Ticket, RelayNodeAddress Address);

    private sealed record HeldRelayConnection(RelayClientConnection Connection, Curve25519PrivateKey Key, byte[] Ticket, RelayNodeAddress Address) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await Connection.DisposeAsync();
            Key.Dispose();
        }
    }

    [Fact]
    public async Task A_node_key_rotation_brings_a_ticket_for_the_new_key_shuts_out_the_old_one_and_a_restarted_control_client_gets_a_ticket_again()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Relay:AccessRecheckSeconds", "1")]);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet("rotation")).Id;
        using var a = TestAgent.Start(agents, [node.Control], "a", (await node.Http.CreateAuthKey(tailnet)).Key);
        var before = await Eventually.Until(() => Task.FromResult(a.RelayAccess), x => x is not null, "a first ticket");
        var oldKey = TicketKey(before!);
        using var oldPrivate = Curve25519PrivateKey.TryParseHex(a.Store.Load().NodePrivateKey, out var old) ? old : throw new InvalidOperationException();
        Assert.Equal(oldKey, oldPrivate.PublicKey);
        var relay = node.Services.GetRequiredService<EmbeddedRelay>().Server!;
        // A connection on the old key, held past the rotation (as a relay client that missed it would hold it).
        var address = new RelayNodeAddress(before!.ControlHost, Assert.Single(Assert.Single(before.Map.Regions).Nodes).Port);
        await using var heldOld = await RelayClientConnection.ConnectAsync(address, oldPrivate, new ClientInfo { Ticket = before.Ticket }, CancellationToken.None);
        Assert.Contains(oldKey, relay.ConnectedKeys);

        a.Client.Tell(RotateNodeKeyNow.Instance);
        var after = await Eventually.Until(() => Task.FromResult(a.RelayAccess), x => x is not null && TicketKey(x) != oldKey, "a ticket for the new key");
        using var current = Curve25519PrivateKey.TryParseHex(a.Store.Load().NodePrivateKey, out var parsed) ? parsed : throw new InvalidOperationException();
        Assert.Equal(current.PublicKey, TicketKey(after!));
        Assert.Equal(before.Map, after!.Map);

        // No revocation goes round for a rotation: the relay's next check of its live connections asks the tailnet, which no longer knows the key.
        await Eventually.Until(() => Task.FromResult(relay.ConnectedKeys), keys => !keys.Contains(oldKey), "the old key's relay connection closed");
        Assert.Equal(1, relay.Counters.RefusedFor("ticket_revoked_on_recheck"));

        // The old key's ticket is signed and unexpired, but refused from now on; the new key's gets in.
        var refused = await Assert.ThrowsAsync<RelayProtocolException>(() =>
            RelayClientConnection.ConnectAsync(address, oldPrivate, new ClientInfo { Ticket = before.Ticket }, CancellationToken.None));
        Assert.Contains("revoked", refused.Message);
        Assert.Equal(1, relay.Counters.RefusedFor("ticket_revoked"));
        await using (await RelayClientConnection.ConnectAsync(address, current, new ClientInfo { Ticket = after.Ticket }, CancellationToken.None))
            Assert.Contains(current.PublicKey, relay.ConnectedKeys);

        // The control client dies: the new one subscribes again and is handed a ticket again.
        var held = a.RelayAccess;
        a.Client.Tell(Kill.Instance);
        await Eventually.Until(() => Task.FromResult(a.RelayAccess), x => !ReferenceEquals(x, held), "a ticket after the restart");
    }

    private static Curve25519PublicKey TicketKey(RelayAccessChanged access) =>
        RelayTicket.TryReadNodeKey(access.Ticket, out var key) ? key : throw new InvalidOperationException("not a ticket");

    [Fact]
    public async Task Agents_that_can_meet_only_through_the_relay_keep_talking_when_their_relay_client_path_manager_or_control_client_is_killed()
    {
        await using var storage = TestStorage.NewSqlite();
        // No STUN: nothing can tell the agents where the other really is, so only the relay joins them.
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Relay:Stun", "off")]);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet("relayed")).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        // Each advertises an endpoint where nothing listens (loopback port 9, discard): direct paths lead nowhere.
        TestAgent Start(string name) => TestAgent.Start(agents, [node.Control], name, key, tunnels: true,
            tune: o => o with { Endpoints = ["127.0.0.1:9"] }, tunePlane: p => p with { StaticEndpoints = ["127.0.0.1:9"] });
        using var a = Start("a");
        using var b = Start("b");
        await a.WaitForPeers(b);
        await b.WaitForPeers(a);
        var relay = node.Services.GetRequiredService<EmbeddedRelay>().Server!;

        await AgentRestartTests.Passes(a, b);
        await AgentRestartTests.Passes(b, a);
        Assert.True(relay.Counters.PacketsForwarded > 0, "the packets went through the relay");
        Assert.Equal("relay", await PathOf(a, b));

        foreach (var victim in new[] { "paths/relay-1.*", "paths/netcheck", $"paths/path-{b.DeviceId}.*", "paths" })
        {
            var target = await agents.System.ActorSelection(a.DataPlane!.Path + "/" + victim).ResolveOne(TimeSpan.FromSeconds(5));
            target.Tell(Kill.Instance);
            var forwarded = relay.Counters.PacketsForwarded;
            await AgentRestartTests.Passes(a, b, context: $"after killing {victim}");
            await AgentRestartTests.Passes(b, a, context: $"after killing {victim}");
            Assert.True(relay.Counters.PacketsForwarded > forwarded, $"after killing {victim}, traffic goes through the relay again");
            // Netcheck answers again (a killed netcheck is started again by its PathManager, a killed
            // PathManager starts a new one), with the relay map its parent hands it and the home region.
            var report = (await Eventually.Until(() => NetcheckOf(a), r => r is { Regions.Count: > 0 },
                $"after killing {victim}, a netcheck report with the relay map's region"))!;
            Assert.Equal(1, Assert.Single(report.Regions).RegionId);
            Assert.Equal(1, report.HomeRegion);
        }

        // Disco from a key no peer has is ignored and counted, and changes no path.
        using var strangerDisco = Curve25519PrivateKey.Generate();
        using var strangerBox = Contracts.Crypto.SealedBox.Between(strangerDisco, strangerDisco.PublicKey)!;
        using (var udp = new System.Net.Sockets.UdpClient(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0)))
            await udp.SendAsync(Contracts.Disco.DiscoPacket.Seal(new Contracts.Disco.DiscoPing(new byte[12], strangerDisco.PublicKey), strangerDisco.PublicKey, strangerBox),
                new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, a.Device!.ListenPort));
        await Eventually.Until(async () => (await a.DataPlane!.Ask<PathStatusReply>(GetPathStatus.Instance, TimeSpan.FromSeconds(5))).UnknownDiscoPackets,
            n => n >= 1, "the stranger's disco packet counted");
        Assert.Equal("relay", await PathOf(a, b));

        // The control client dies: a new stream and a new ticket (the disco key is kept); the relay path survives it.
        a.Client.Tell(Kill.Instance);
        await a.WaitForState(ControlState.Running);
        await AgentRestartTests.Passes(a, b);
        await AgentRestartTests.Passes(b, a);
        Assert.Equal("relay", await PathOf(a, b));
        // The engine's peer still hears its path finder (not silenced by one stopping with the old control
        // client: nothing would then wake its heartbeat).
        var bKey = new Curve25519PublicKey(b.View.Self!.NodeKey.Span);
        await Task.Delay(1000);
        Assert.True(a.Device!.Peers[bKey].HasPathFinder, "the new path finder hears b's packet path");
    }

    [Fact]
    public async Task An_agent_that_is_down_or_whose_device_was_deleted_opens_no_relay_connection_when_a_netcheck_names_its_home_region()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet("relay-down")).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        using var a = TestAgent.Start(agents, [node.Control], "a", key, tunnels: true);
        using var b = TestAgent.Start(agents, [node.Control], "b", key, tunnels: true);
        var relay = node.Services.GetRequiredService<EmbeddedRelay>().Server!;
        var aKey = NodeKeyOf(a);
        var bKey = NodeKeyOf(b);
        await Eventually.Until(() => Task.FromResult(relay.ConnectedKeys), keys => keys.Contains(aKey) && keys.Contains(bKey), "both agents on their home relay");

        // `weft-agent down`: the home relay connection closes, and a netcheck (they go on while down, every
        // 20-26 s or when asked) that names the home region again must not open it again.
        a.Client.Tell(TakeDown.Instance);
        await a.WaitForState(ControlState.Stopped);
        await Eventually.Until(() => Task.FromResult(relay.ConnectedKeys), keys => !keys.Contains(aKey), "a's relay connection closed when it went down");
        var report = await a.DataPlane!.Ask<NetcheckReport>(GetNetcheck.Instance, TimeSpan.FromSeconds(10));
        Assert.Equal(1, report.HomeRegion);
        await StaysWithoutRelay(agents, a, aKey, relay, "down");

        // `weft-agent up` opens it again.
        a.Client.Tell(new LogIn(new ControlLogin([node.Control], "a", null, null, false, default), Connect: true));
        await a.WaitForState(ControlState.Running);
        await Eventually.Until(() => Task.FromResult(relay.ConnectedKeys), keys => keys.Contains(aKey), "a's relay connection back after up");

        // b's device is deleted: its agent needs a login, its ticket is revoked, and a netcheck must not
        // start a relay client that retries the refused ticket for good.
        Assert.Equal(System.Net.HttpStatusCode.NoContent, (await node.Http.DeleteAsync($"/api/v1/tailnets/{tailnet}/devices/{b.DeviceId}")).StatusCode);
        await Eventually.Until(() => Task.FromResult(b.State.State), s => s == ControlState.NeedsLogin, "b needs a login after its device was deleted");
        await Eventually.Until(() => Task.FromResult(relay.ConnectedKeys), keys => !keys.Contains(bKey), "b's relay connection closed");
        var refusedBefore = relay.Counters.RefusedFor("ticket_revoked");
        await b.DataPlane!.Ask<NetcheckReport>(GetNetcheck.Instance, TimeSpan.FromSeconds(10));
        await StaysWithoutRelay(agents, b, bKey, relay, "deleted");
        Assert.Equal(refusedBefore, relay.Counters.RefusedFor("ticket_revoked"));
        Assert.Contains(aKey, relay.ConnectedKeys);
    }

    [Fact]
    public async Task A_relay_client_replaced_twice_within_the_grace_closes_both_old_connections_and_one_stopped_mid_replacement_closes_every_one()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet("relay-replace")).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        using var a = TestAgent.Start(agents, [node.Control], "a", key, tunnels: true);
        var relay = node.Services.GetRequiredService<EmbeddedRelay>().Server!;
        var aKey = NodeKeyOf(a);
        await Eventually.Until(() => Task.FromResult(relay.ConnectionCountOf(aKey)), n => n == 1, "a on its home relay");
        var client = await agents.System.ActorSelection(a.DataPlane!.Path + "/paths/relay-*").ResolveOne(TimeSpan.FromSeconds(5));

        // A roam: the path manager reconnects the relay, and the new stream's fresh ticket replaces the
        // connection again a moment later. Make before break keeps each old one for its grace, and then
        // closes it: both of them, not only the last.
        client.Tell(ReconnectRelay.Instance);
        await Eventually.Until(() => Task.FromResult(relay.ConnectionCountOf(aKey)), n => n == 2, "the first replacement up beside the old connection");
        client.Tell(ReconnectRelay.Instance);
        await Eventually.Until(() => Task.FromResult(relay.ConnectionCountOf(aKey)), n => n == 3, "the second replacement up beside both");
        await Eventually.Until(() => Task.FromResult(relay.ConnectionCountOf(aKey)), n => n == 1, "the old connections closed after their grace");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Equal(1, relay.ConnectionCountOf(aKey));

        // Replaced, then stopped (`down`) before the grace ran out: nothing of it stays connected.
        client.Tell(ReconnectRelay.Instance);
        await Eventually.Until(() => Task.FromResult(relay.ConnectionCountOf(aKey)), n => n == 2, "a replacement up beside the old connection");
        a.Client.Tell(TakeDown.Instance);
        await a.WaitForState(ControlState.Stopped);
        await Eventually.Until(() => Task.FromResult(relay.ConnectionCountOf(aKey)), n => n == 0, "every connection closed when the client stopped");
    }

    [Fact]
    public async Task A_netcheck_asked_for_as_endpoint_discovery_fails_or_while_it_is_stopped_is_still_answered()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet("netcheck-restart")).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        using var a = TestAgent.Start(agents, [node.Control], "a", key, tunnels: true);
        await Eventually.Until(() => NetcheckOf(a), report => report is { HomeRegion: 1 }, "a's netcheck with the relay map");
        var netcheck = await agents.System.ActorSelection(a.DataPlane!.Path / "paths" / "netcheck").ResolveOne(TimeSpan.FromSeconds(5));

        // `weft-agent netcheck`, and endpoint discovery fails before its probe answers: it restarts, and the
        // one who asked is answered (with the last report), not left to time out.
        var asked = netcheck.Ask<NetcheckReport>(GetNetcheck.Instance, TimeSpan.FromSeconds(10));
        netcheck.Tell(Kill.Instance);
        Assert.Equal(1, (await asked).HomeRegion);

        // Endpoint discovery stops (it failed too often); its path manager starts it again a second later.
        // A netcheck asked for meanwhile is answered by the new one.
        netcheck.Tell(PoisonPill.Instance);
        await Task.Delay(200);
        Assert.NotNull(await a.DataPlane!.Ask<NetcheckReport>(GetNetcheck.Instance, TimeSpan.FromSeconds(10)));
    }

    /// <summary>For two seconds <paramref name="key"/> has no relay connection, and then <paramref name="agent"/> has no relay client.</summary>
    private static async Task StaysWithoutRelay(AgentSystem agents, TestAgent agent, Curve25519PublicKey key, RelayServer relay, string when)
    {
        for (var check = 0; check < 10; check++)
        {
            Assert.False(relay.ConnectedKeys.Contains(key), $"{agent.Hostname} ({when}) is connected to the relay again");
            await Task.Delay(200);
        }
        await Assert.ThrowsAsync<ActorNotFoundException>(() =>
            agents.System.ActorSelection(agent.DataPlane!.Path + "/paths/relay-*").ResolveOne(TimeSpan.FromSeconds(1)));
    }

    private static Curve25519PublicKey NodeKeyOf(TestAgent agent)
    {
        using var key = Curve25519PrivateKey.TryParseHex(agent.Store.Load().NodePrivateKey, out var parsed) ? parsed : throw new InvalidOperationException();
        return key.PublicKey;
    }

    [Fact]
    public async Task A_direct_path_proves_the_mtu_it_carries_the_tun_follows_and_a_restarted_path_manager_proves_it_again()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet("mtu")).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        using var a = TestAgent.Start(agents, [node.Control], "a", key, tunnels: true);
        using var b = TestAgent.Start(agents, [node.Control], "b", key, tunnels: true);
        await a.WaitForPeers(b);
        await b.WaitForPeers(a);
        var configured = a.Device!.BaseMtu;
        Assert.True(configured < WireGuardDevice.MaxMtu, "the test needs room above the configured MTU");

        // Loopback carries any size: the largest probe (1500 bytes outside, so 1440 inside) is answered.
        for (var round = 0; round < 2; round++)
        {
            await AgentRestartTests.Passes(a, b);
            await Eventually.Until(() => PathStatusOf(a, b), s => s is { Kind: "direct", Mtu: WireGuardDevice.MaxMtu }, "a's direct path to b proves 1440 bytes");
            await Eventually.Until(() => Task.FromResult(a.Device.Mtu), mtu => mtu == WireGuardDevice.MaxMtu, "a's TUN follows the largest path MTU");
            await AgentRestartTests.Passes(a, b, size: WireGuardDevice.MaxMtu);

            // A restarted path manager starts over from the relay and the configured MTU, and proves the path again.
            if (round == 0) (await agents.System.ActorSelection(a.DataPlane!.Path + "/paths").ResolveOne(TimeSpan.FromSeconds(5))).Tell(Kill.Instance);
        }

        // b leaves the tailnet: with no path left that proved more, a's TUN returns to the configured MTU.
        Assert.Equal(System.Net.HttpStatusCode.NoContent, (await node.Http.DeleteAsync($"/api/v1/tailnets/{tailnet}/devices/{b.DeviceId}")).StatusCode);
        await Eventually.Until(() => Task.FromResult(a.Device.Mtu), mtu => mtu == configured, "a's TUN returns to the configured MTU");
    }

    internal static async Task<PathStatus?> PathStatusOf(TestAgent from, TestAgent to)
    {
        var toKey = Convert.ToHexStringLower(to.View.Self!.NodeKey.ToByteArray());
        return (await from.DataPlane!.Ask<PathStatusReply>(GetPathStatus.Instance, TimeSpan.FromSeconds(5))).Paths.FirstOrDefault(p => p.NodeKeyHex == toKey);
    }

    /// <summary>The agent's netcheck report, or null while no netcheck answers (one that stopped is started again a second later).</summary>
    private static async Task<NetcheckReport?> NetcheckOf(TestAgent agent)
    {
        try { return await agent.DataPlane!.Ask<NetcheckReport>(GetNetcheck.Instance, TimeSpan.FromSeconds(3)); }
        catch (AskTimeoutException) { return null; }
    }

    /// <summary>The kind of path <paramref name="from"/>'s path finder uses to <paramref name="to"/>, once it has one.</summary>
    private static async Task<string> PathOf(TestAgent from, TestAgent to)
    {
        var status = await Eventually.Until(() => PathStatusOf(from, to), found => found is { Kind: not "none" }, $"{from.Hostname}'s path to {to.Hostname}");
        return status!.Kind;
    }
}
