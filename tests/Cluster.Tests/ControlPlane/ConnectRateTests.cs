using System.Net;
using System.Security.Cryptography;
using Akka.Actor;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Weft.Cluster.Control;
using Weft.Cluster.Sessions;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Control;
using Weft.NodeAgent.Control;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>One address may open control streams at a bounded rate; the rest of the world is not slowed by it.</summary>
public class ConnectRateTests
{
    [Fact]
    public void Each_address_has_its_own_allowance()
    {
        var admission = new ControlAdmission(new ControlSettings { ConnectsPerSecondPerAddress = 5 }, TimeProvider.System);
        var flooder = IPAddress.Parse("198.18.0.7");

        var admitted = Enumerable.Range(0, 50).Count(attempt => admission.TryAdmitConnectFrom(flooder, out _));
        Assert.InRange(admitted, 10, 11); // the burst (twice the rate), and at most one refilled meanwhile
        Assert.False(admission.TryAdmitConnectFrom(flooder, out var wait));
        Assert.True(wait >= 1000);
        Assert.True(admission.TryAdmitConnectFrom(IPAddress.Parse("198.18.0.8"), out _));
        Assert.True(admission.TryAdmitConnectFrom(IPAddress.Parse("::ffff:198.18.0.9"), out _));
    }

    [Fact]
    public void An_ipv6_host_counts_as_its_whole_64_so_a_new_address_per_stream_does_not_refill_its_allowance()
    {
        // A host is given a /64 and may take a new address from it for every connection (privacy addresses, or on purpose).
        var admission = new ControlAdmission(new ControlSettings { ConnectsPerSecondPerAddress = 5 }, TimeProvider.System);
        var admitted = Enumerable.Range(1, 50).Count(host => admission.TryAdmitConnectFrom(IPAddress.Parse($"fd7a:115c:a1e0:1::{host:x}"), out _));
        Assert.InRange(admitted, 10, 11);
        Assert.True(admission.TryAdmitConnectFrom(IPAddress.Parse("fd7a:115c:a1e0:2::1"), out _)); // another /64, another host

        var held = new Weft.Relay.HeldPerAddress(maximum: 100, maximumPerAddress: 3);
        Assert.Equal(3, Enumerable.Range(1, 10).Count(host => held.TryEnter(IPAddress.Parse($"fd7a:115c:a1e0:1:0:0:0:{host:x}")) == Weft.Relay.HeldPerAddress.Refusal.None));
        held.Leave(IPAddress.Parse("fd7a:115c:a1e0:1::7")); // any address of the /64 gives its place back
        Assert.Equal(Weft.Relay.HeldPerAddress.Refusal.None, held.TryEnter(IPAddress.Parse("fd7a:115c:a1e0:1::8")));
        Assert.Equal(Weft.Relay.HeldPerAddress.Refusal.None, held.TryEnter(IPAddress.Parse("198.18.0.7")));
        Assert.Equal(IPAddress.Parse("198.18.0.7"), Weft.Relay.HeldPerAddress.SenderOf(IPAddress.Parse("::ffff:198.18.0.7")));
        // Through a NAT64 every IPv4 host arrives from one /64: each still counts as itself.
        Assert.Equal(IPAddress.Parse("198.18.0.7"), Weft.Relay.HeldPerAddress.SenderOf(IPAddress.Parse("64:ff9b::c612:7")));
    }

    [Fact]
    public void One_address_holds_at_most_a_tenth_of_the_handshake_slots_so_streams_that_never_say_hello_cannot_take_them_all()
    {
        var admission = new ControlAdmission(new ControlSettings { MaxPendingHandshakes = 20 }, TimeProvider.System);
        var silent = IPAddress.Parse("198.18.0.7");
        var held = Enumerable.Range(0, 5).Select(i => admission.TryBeginHandshake(silent, out _)).ToList();
        Assert.Equal(2, held.Count(slot => slot is not null));
        Assert.Null(admission.TryBeginHandshake(silent, out var fromAddress));
        Assert.True(fromAddress, "refused for the address, not the node");
        Assert.NotNull(admission.TryBeginHandshake(IPAddress.Parse("198.18.0.8"), out _)); // everyone else still gets in
        held[0]!.Dispose();
        held[0]!.Dispose(); // twice gives back one slot
        Assert.NotNull(admission.TryBeginHandshake(silent, out _));
        Assert.Null(admission.TryBeginHandshake(silent, out _));
    }

    [Fact]
    public void Registrations_from_one_address_have_their_own_allowance_beside_its_streams()
    {
        var admission = new ControlAdmission(new ControlSettings { ConnectsPerSecondPerAddress = 5 }, TimeProvider.System);
        var flooder = IPAddress.Parse("198.18.0.7");

        var admitted = Enumerable.Range(0, 50).Count(attempt => admission.TryAdmitRegistrationFrom(flooder, out _));
        Assert.InRange(admitted, 10, 11);
        Assert.False(admission.TryAdmitRegistrationFrom(flooder, out var wait));
        Assert.True(wait >= 1000);
        Assert.True(admission.TryAdmitConnectFrom(flooder, out _)); // streams are counted apart
        Assert.True(admission.TryAdmitRegistrationFrom(IPAddress.Parse("198.18.0.8"), out _));
    }

    [Fact]
    public async Task One_machine_key_that_keeps_connecting_is_slowed_down_and_another_machine_is_not()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:HandshakesPerSecondPerMachine", "1")]);
        using var machine = Weft.Contracts.Keys.Curve25519PrivateKey.Generate();
        var start = DateTimeOffset.UtcNow;

        var refusals = new List<RpcException>();
        for (var i = 0; i < 8; i++)
        {
            await using var stream = await RawControlStream.OpenAsync(node.Control);
            try
            {
                await stream.Handshake(machine, start.AddMilliseconds(i)); // each a fresh handshake, not a replay
            }
            catch (RpcException e)
            {
                refusals.Add(e);
            }
        }

        Assert.NotEmpty(refusals);
        Assert.All(refusals, e => Assert.StartsWith(ControlErrorCodes.RateLimited, e.Status.Detail));
        await using var other = await RawControlStream.OpenAsync(node.Control);
        using var otherMachine = Weft.Contracts.Keys.Curve25519PrivateKey.Generate();
        await other.Handshake(otherMachine);
        Assert.NotNull(other.Transport);
    }

    [Fact]
    public async Task A_node_that_cannot_start_a_session_in_time_tells_the_agent_to_retry_shortly_instead_of_failing_the_stream()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        // The node's session guardian answers no one (as under a storm it answers too late): no session starts in time.
        var guardian = node.Services.GetRequiredService<Akka.Hosting.IRequiredActor<SessionGuardian>>().ActorRef;
        Assert.True(await guardian.GracefulStop(TimeSpan.FromSeconds(10)));

        await using var stream = await RawControlStream.OpenAsync(node.Control);
        using var machine = Weft.Contracts.Keys.Curve25519PrivateKey.Generate();
        await stream.Handshake(machine);
        var refused = await Assert.ThrowsAsync<RpcException>(() => stream.ReadRaw());
        Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
        Assert.StartsWith(ControlErrorCodes.Unavailable, refused.Status.Detail);
        Assert.Contains("could not start a session within 5 s", refused.Status.Detail);
        Assert.Equal(DeviceRegistrar.RetryAfterMs.ToString(), refused.Trailers.GetValue(ControlProtocol.RetryAfterTrailer));
    }

    [Fact]
    public void Registrations_with_one_auth_key_are_limited_wherever_they_come_from()
    {
        var admission = new ControlAdmission(new ControlSettings { RegistrationsPerSecondPerAuthKey = 5 }, TimeProvider.System);

        var admitted = Enumerable.Range(0, 50).Count(attempt => admission.TryAdmitRegistrationWith("tn_a/leaked", out _));
        Assert.InRange(admitted, 10, 11);
        Assert.False(admission.TryAdmitRegistrationWith("tn_a/leaked", out var wait));
        Assert.True(wait >= 1000);
        Assert.True(admission.TryAdmitRegistrationWith("tn_a/another", out _));
        Assert.True(admission.TryAdmitRegistrationWith(null, out _)); // no key: the address limits apply
    }

    [Fact]
    public async Task Registrations_repeated_on_one_stream_are_refused_with_a_retry_time_beyond_the_address_allowance()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:ConnectsPerSecondPerAddress", "2")]);
        var tailnet = (await node.Http.CreateTailnet($"reg-{Guid.NewGuid():N}"[..20])).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;

        await using var stream = await RawControlStream.OpenAsync(node.Control);
        using var machine = Weft.Contracts.Keys.Curve25519PrivateKey.Generate();
        using var nodeKey = Weft.Contracts.Keys.Curve25519PrivateKey.Generate();
        await stream.Handshake(machine);
        var answers = new List<RegisterResult>();
        for (var i = 0; i < 10; i++) answers.Add(await stream.Register(machine, nodeKey, authKey: key));

        Assert.Equal(RegisterResult.Types.Status.Authorized, answers[0].Status);
        var limited = answers.Where(a => a.RefusalCode == ControlErrorCodes.RateLimited).ToList();
        Assert.NotEmpty(limited);
        Assert.All(limited, a => Assert.True(a.RetryAfterMs >= 1000));
        // Only one device, however many times it asked.
        Assert.Single((await node.Http.ListDevices(tailnet)).Devices);
    }

    [Fact]
    public async Task A_stream_that_sends_faster_than_its_session_works_is_ended_with_a_reason()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:InboundQueueLength", "2")]);
        var tailnet = (await node.Http.CreateTailnet($"inbound-{Guid.NewGuid():N}"[..20])).Id;
        var key = (await node.Http.CreateAuthKey(tailnet)).Key;

        // The frames that arrive while the registration takes its journal writes wait for it, and only two may. On a
        // host busy enough that the registration is done before the third frame is read, the session keeps up and the
        // stream stays open: that attempt proves nothing either way, and another stream tries again.
        var attempts = new List<string>();
        for (var attempt = 1; attempt <= 5; attempt++)
        {
            var (error, endedSoon) = await FloodOneStream(node, key);
            Assert.False(error is null && endedSoon, "the stream ended without saying why");
            if (error is null)
            {
                attempts.Add("the session kept up");
                continue;
            }
            Assert.Equal(ControlErrorCodes.RateLimited, error.Code);
            Assert.Contains("messages are waiting", error.Message);
            Assert.True(endedSoon, "the stream should end after its reason");
            return;
        }
        Assert.Fail($"no stream was ended for sending too fast in {attempts.Count} attempts: {string.Join("; ", attempts)}");
    }

    /// <summary>Registers on a new stream and sends 50 endpoint updates straight after; the error the stream was ended with, if any came within 5 s.</summary>
    private static async Task<(Weft.Contracts.Control.Error? Error, bool EndedSoon)> FloodOneStream(TestCoordinator node, string key)
    {
        await using var stream = await RawControlStream.OpenAsync(node.Control);
        using var machine = Weft.Contracts.Keys.Curve25519PrivateKey.Generate();
        using var nodeKey = Weft.Contracts.Keys.Curve25519PrivateKey.Generate();
        await stream.Handshake(machine);
        await stream.Send(new ClientMessage
        {
            Register = new RegisterRequest
            {
                NodeKey = Google.Protobuf.ByteString.CopyFrom(nodeKey.PublicKey.ToArray()),
                NodeKeyProof = Google.Protobuf.ByteString.CopyFrom(NodeKeyProof.Create(nodeKey, stream.CoordinatorKey, machine.PublicKey)),
                Hostname = "eager",
                AuthKey = key,
            },
        });
        try
        {
            for (var i = 0; i < 50; i++)
                await stream.Send(new ClientMessage { Endpoints = new EndpointUpdate { Endpoints = { $"198.18.0.{i + 1}:41641" } } });
        }
        catch (RpcException)
        {
            // The coordinator ended the stream while this client was still sending: what is expected.
        }

        try
        {
            while (true)
            {
                var message = await stream.Receive(TimeSpan.FromSeconds(5));
                if (message.BodyCase == ServerMessage.BodyOneofCase.Error) return (message.Error, await stream.EndsSoon());
            }
        }
        catch (OperationCanceledException)
        {
            return (null, false); // still open: the session kept up
        }
        catch (Exception e) when (e is RpcException or EndOfStreamException)
        {
            return (null, true); // ended without a reason: the assertion on the error fails
        }
    }

    [Fact]
    public async Task A_flood_of_streams_from_one_address_is_refused_with_a_retry_time_and_an_agent_there_still_gets_in()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:ConnectsPerSecondPerAddress", "2")]);

        // Each stream sends a forged initiation: an admitted one is refused at once as unauthenticated.
        // A stream refused on arrival may be ended before our write goes out: the refusal is then in
        // the response; and the server's reset of the unread request may even overtake it.
        var refusals = new List<RpcException>();
        for (var i = 0; i < 10; i++)
        {
            await using var stream = await RawControlStream.OpenAsync(node.Control);
            var error = await Assert.ThrowsAsync<RpcException>(async () =>
            {
                try
                {
                    await stream.SendRaw(RandomNumberGenerator.GetBytes(ControlProtocol.InitiationSize));
                }
                catch (RpcException written) when (written.StatusCode == StatusCode.Cancelled)
                {
                    // ended before the write: read what the server said
                }
                await stream.ReadRaw();
            });
            if (error.StatusCode is StatusCode.Unauthenticated or StatusCode.Cancelled) continue;
            refusals.Add(error);
        }

        Assert.NotEmpty(refusals);
        Assert.All(refusals, e =>
        {
            Assert.Equal(StatusCode.Unavailable, e.StatusCode);
            Assert.StartsWith(ControlErrorCodes.RateLimited, e.Status.Detail);
            Assert.NotNull(e.Trailers.GetValue(ControlProtocol.RetryAfterTrailer));
        });

        // An agent from the same address waits as it is told, and joins.
        await using var agents = new AgentSystem();
        var tailnet = (await node.Http.CreateTailnet($"rate-{Guid.NewGuid():N}"[..20])).Id;
        var agent = TestAgent.Start(agents, node.Control, "patient", (await node.Http.CreateAuthKey(tailnet)).Key);
        await agent.WaitForState(ControlState.Running);
    }
}
