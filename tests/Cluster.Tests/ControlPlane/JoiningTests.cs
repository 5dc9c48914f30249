using System.Net;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;
using Weft.NodeAgent.Control;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>How devices join: each kind of auth key, and approval of a device that came without one.</summary>
public class JoiningTests(SharedCoordinator coordinator) : IClassFixture<SharedCoordinator>
{
    private HttpClient Http => coordinator.Http;

    [Fact]
    public async Task A_one_off_key_joins_one_device_and_is_refused_the_second_time()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("oneoff");
        var key = await Http.CreateAuthKey(tailnet);

        var first = TestAgent.Start(agents, coordinator.Control, "first", key.Key);
        await first.WaitForState(ControlState.Running);
        var before = await Http.DevicesSnapshot(tailnet);

        var second = TestAgent.Start(agents, coordinator.Control, "second", key.Key);
        await second.WaitForState(ControlState.NeedsLogin, ControlErrorCodes.AuthKeyUsed);

        Assert.Equal(before, await Http.DevicesSnapshot(tailnet));
        var listed = await (await Http.GetAsync($"/api/v1/tailnets/{tailnet}/auth-keys")).ReadAs<AuthKeyListResource>(HttpStatusCode.OK);
        Assert.Equal(1, Assert.Single(listed.AuthKeys).Uses);
        // The key stays usable by the device it joined: a restart of that agent re-registers without it.
        await first.Stop();
        var again = TestAgent.Start(agents, [coordinator.Control], "first", key.Key, store: first.Store);
        await again.WaitForState(ControlState.Running);
    }

    [Fact]
    public async Task A_reusable_key_joins_many_devices_until_revoked()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("reuse");
        var key = await Http.CreateAuthKey(tailnet, reusable: true);
        foreach (var name in new[] { "r1", "r2", "r3" })
            await TestAgent.Start(agents, coordinator.Control, name, key.Key).WaitForState(ControlState.Running);

        Assert.Equal(HttpStatusCode.NoContent, (await Http.DeleteAsync($"/api/v1/tailnets/{tailnet}/auth-keys/{key.AuthKey.Id}")).StatusCode);
        var before = await Http.DevicesSnapshot(tailnet);
        var late = TestAgent.Start(agents, coordinator.Control, "late", key.Key);
        await late.WaitForState(ControlState.NeedsLogin, ControlErrorCodes.AuthKeyRevoked);
        Assert.Equal(before, await Http.DevicesSnapshot(tailnet));
    }

    [Fact]
    public async Task An_expired_key_is_refused_and_nothing_is_stored()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("expired");
        var key = await Http.CreateAuthKey(tailnet, expirySeconds: 1);
        await Task.Delay(TimeSpan.FromSeconds(1.2)); // let the key's lifetime pass

        var agent = TestAgent.Start(agents, coordinator.Control, "late", key.Key);
        await agent.WaitForState(ControlState.NeedsLogin, ControlErrorCodes.AuthKeyExpired);

        Assert.Empty((await Http.ListDevices(tailnet)).Devices);
        var listed = await (await Http.GetAsync($"/api/v1/tailnets/{tailnet}/auth-keys")).ReadAs<AuthKeyListResource>(HttpStatusCode.OK);
        var stored = Assert.Single(listed.AuthKeys);
        Assert.True(stored.Expired);
        Assert.Equal(0, stored.Uses);
    }

    [Fact]
    public async Task A_tagged_key_tags_the_device_which_then_does_not_expire()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("tagged");
        var user = await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/users", new { name = "alice@example.com" })).ReadAs<UserResource>(HttpStatusCode.Created);
        await Http.DefineTags(tailnet, "tag:server", "tag:db");
        var serverKey = await Http.CreateAuthKey(tailnet, tags: ["tag:server", "tag:db"]);
        var laptopKey = await Http.CreateAuthKey(tailnet, user: user.Name);

        var server = TestAgent.Start(agents, coordinator.Control, "db1", serverKey.Key);
        var laptop = TestAgent.Start(agents, coordinator.Control, "laptop", laptopKey.Key);
        await server.WaitForState(ControlState.Running);
        await laptop.WaitForState(ControlState.Running);

        var seen = await laptop.WaitForNetMap(v => v.Peers.ContainsKey(server.DeviceId!), "the server");
        Assert.Equal(["tag:db", "tag:server"], seen.Peers[server.DeviceId!].Tags);
        Assert.Null(seen.Peers[server.DeviceId!].KeyExpiry);
        var stored = await Http.GetDevice(tailnet, server.DeviceId!);
        Assert.Equal(["tag:db", "tag:server"], stored.Tags);
        Assert.Null(stored.KeyExpiry);
        Assert.Null(stored.User);

        var laptopStored = await Http.GetDevice(tailnet, laptop.DeviceId!);
        Assert.Equal("alice@example.com", laptopStored.User);
        Assert.NotNull(laptopStored.KeyExpiry);
        Assert.Empty(laptopStored.Tags);
    }

    [Fact]
    public async Task An_ephemeral_device_that_registers_and_never_subscribes_is_removed()
    {
        var tailnet = await coordinator.NewTailnet("ephemeral-quiet", ephemeralTimeoutSeconds: 1);
        var key = await Http.CreateAuthKey(tailnet, ephemeral: true);
        await using var stream = await RawControlStream.OpenAsync(coordinator.Control);
        using var machine = Curve25519PrivateKey.Generate();
        using var node = Curve25519PrivateKey.Generate();
        await stream.Handshake(machine);

        var registered = await stream.Register(machine, node, authKey: key.Key);
        Assert.Equal(RegisterResult.Types.Status.Authorized, registered.Status);
        Assert.Single((await Http.ListDevices(tailnet)).Devices);

        // The stream stays open, but the device never asks for its netmap: it never came online.
        await Eventually.Until(() => Http.ListDevices(tailnet), listing => listing.Devices.Count == 0, "the ephemeral device that never subscribed removed");
    }

    [Fact]
    public async Task An_ephemeral_device_is_removed_after_it_disconnects()
    {
        await using var agents = new AgentSystem();
        // The timeout is short only once the device is online: on a busy machine an agent may take longer
        // than a second to subscribe after it registers, and one that has not is removed as never connected.
        var tailnet = await coordinator.NewTailnet("ephemeral");
        var ephemeralKey = await Http.CreateAuthKey(tailnet, ephemeral: true);
        var keeperKey = await Http.CreateAuthKey(tailnet);

        var keeper = TestAgent.Start(agents, coordinator.Control, "keeper", keeperKey.Key);
        var passing = TestAgent.Start(agents, coordinator.Control, "passing", ephemeralKey.Key);
        await keeper.WaitForState(ControlState.Running);
        await passing.WaitForState(ControlState.Running);
        await keeper.WaitForPeers(passing);
        var passingId = passing.DeviceId!;
        Assert.True((await Http.GetDevice(tailnet, passingId)).Ephemeral);
        await Eventually.Until(() => Http.GetDevice(tailnet, passingId), d => d.Online, "the ephemeral device online");
        await keeper.WaitForNetMap(v => v.Peers[passingId].Online, "the ephemeral device online in the keeper's map");
        await (await Http.PatchJson($"/api/v1/tailnets/{tailnet}", new Dictionary<string, int> { ["ephemeralTimeoutSeconds"] = 1 })).ReadAs<TailnetResource>(HttpStatusCode.OK);

        await passing.Stop();

        // Offline first, then gone from the peer's netmap and from the tailnet.
        try
        {
            await keeper.WaitForNetMap(v => !v.Peers.ContainsKey(passingId), "the ephemeral device removed");
        }
        catch (TimeoutException e)
        {
            // What the coordinator thinks of the device and its stream, to tell a lost disconnect from a lost removal.
            var devices = await Http.ListDevices(tailnet);
            var stream = await Http.GetAsync($"/api/v1/tailnets/{tailnet}/devices/{passingId}/stream");
            throw new TimeoutException($"{e.Message}; coordinator: devices [{string.Join(", ", devices.Devices.Select(d => $"{d.Name} online={d.Online}"))}], " +
                $"stream of the stopped device {await stream.Content.ReadAsStringAsync()}", e);
        }
        // The offline state travels as a patch, or folded into the node when it was still on its way to the keeper.
        Assert.Contains(keeper.Received, m => m.BodyCase == ServerMessage.BodyOneofCase.Delta
            && (m.Delta.Patches.Any(p => p.Id == passingId && p.HasOnline && !p.Online)
                || m.Delta.PeersAdded.Concat(m.Delta.PeersChanged).Any(n => n.Id == passingId && !n.Online && n.LastSeen is not null)));
        Assert.DoesNotContain((await Http.ListDevices(tailnet)).Devices, d => d.Id == passingId);
        Assert.Contains((await Http.ListDevices(tailnet)).Devices, d => d.Id == keeper.DeviceId);
    }

    [Fact]
    public async Task A_device_without_a_key_waits_with_no_address_until_approved_then_gets_its_netmap()
    {
        await using var agents = new AgentSystem();
        var tailnetName = $"approve-{Guid.NewGuid():N}"[..24];
        var tailnet = (await Http.CreateTailnet(tailnetName)).Id;
        await (await Http.PatchJson($"/api/v1/tailnets/{tailnet}", new { keylessRegistration = true })).ReadAs<TailnetResource>(HttpStatusCode.OK);
        var member = TestAgent.Start(agents, coordinator.Control, "member", (await Http.CreateAuthKey(tailnet)).Key);
        await member.WaitForState(ControlState.Running);

        var newcomer = TestAgent.Start(agents, coordinator.Control, "newcomer", authKey: null, tailnet: tailnetName);
        await newcomer.WaitForState(ControlState.PendingApproval);
        Assert.Null(newcomer.DeviceId); // the answer names no device
        var waiting = Assert.Single((await Http.ListDevices(tailnet)).Devices, d => d.Status == "pending");
        Assert.Equal("newcomer", waiting.Hostname);
        Assert.Equal("", waiting.Name);
        Assert.Empty(waiting.Addresses);
        Assert.Equal("127.0.0.1", waiting.RegisteredFrom);
        // The admin compares the machine key the agent shows with the one the device list shows.
        Assert.Contains(waiting.MachineKey[..21], newcomer.State.Detail);
        Assert.DoesNotContain(waiting.Id, member.View.Peers.Keys);

        var approved = await (await Http.PostAsync($"/api/v1/tailnets/{tailnet}/devices/{waiting.Id}/approve", null)).ReadAs<DeviceResource>(HttpStatusCode.OK);
        Assert.Equal("active", approved.Status);
        Assert.Equal("newcomer", approved.Name);
        Assert.Equal(2, approved.Addresses.Count);

        await newcomer.WaitForState(ControlState.Running);
        Assert.Equal(waiting.Id, newcomer.DeviceId);
        await newcomer.WaitForPeers(member);
        await member.WaitForPeers(newcomer);
    }

    [Fact]
    public async Task A_registration_without_a_key_gets_the_same_answer_whether_the_tailnet_exists_takes_such_devices_or_not()
    {
        var open = $"open-{Guid.NewGuid():N}"[..20];
        var closed = $"closed-{Guid.NewGuid():N}"[..20];
        var openId = (await Http.CreateTailnet(open)).Id;
        await (await Http.PatchJson($"/api/v1/tailnets/{openId}", new { keylessRegistration = true })).ReadAs<TailnetResource>(HttpStatusCode.OK);
        var closedId = (await Http.CreateTailnet(closed)).Id;

        var answers = new List<RegisterResult>();
        foreach (var tailnet in new[] { open, closed, $"missing-{Guid.NewGuid():N}"[..20] })
        {
            await using var stream = await RawControlStream.OpenAsync(coordinator.Control);
            using var machine = Curve25519PrivateKey.Generate();
            using var node = Curve25519PrivateKey.Generate();
            await stream.Handshake(machine);
            answers.Add(await stream.Register(machine, node, tailnet: tailnet, hostname: "web"));
        }

        Assert.All(answers, answer => Assert.Equal(answers[0], answer));
        Assert.Equal(RegisterResult.Types.Status.PendingApproval, answers[0].Status);
        Assert.Equal(("", "", 0), (answers[0].DeviceId, answers[0].TailnetId, answers[0].Addresses.Count));
        Assert.Single((await Http.ListDevices(openId)).Devices, d => d.Status == "pending");
        Assert.Empty((await Http.ListDevices(closedId)).Devices);

        // Bulk delete clears the waiting devices.
        var deleted = await (await Http.DeleteAsync($"/api/v1/tailnets/{openId}/devices?status=pending")).ReadAs<DeletedDevicesResource>(HttpStatusCode.OK);
        Assert.Single(deleted.Deleted);
        Assert.Empty((await Http.ListDevices(openId)).Devices);
        Assert.Equal(ApiErrorCodes.InvalidRequest, (await (await Http.DeleteAsync($"/api/v1/tailnets/{openId}/devices")).ReadError(HttpStatusCode.BadRequest)).Code);
    }

    [Fact]
    public async Task Admin_changes_to_a_device_reach_its_peers()
    {
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.NewTailnet("admin");
        await Http.DefineTags(tailnet, "tag:web");
        var key = await Http.CreateAuthKey(tailnet, reusable: true);
        var one = TestAgent.Start(agents, coordinator.Control, "one", key.Key);
        var two = TestAgent.Start(agents, coordinator.Control, "two", key.Key);
        await one.WaitForState(ControlState.Running);
        await two.WaitForState(ControlState.Running);
        await one.WaitForPeers(two);

        await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/two/rename", new { name = "web" })).ReadAs<DeviceResource>(HttpStatusCode.OK);
        await (await Http.PostJson($"/api/v1/tailnets/{tailnet}/devices/web/tags", new { tags = new[] { "tag:web" } })).ReadAs<DeviceResource>(HttpStatusCode.OK);

        var view = await one.WaitForNetMap(v => v.Peers[two.DeviceId!].Name == "web" && v.Peers[two.DeviceId!].Tags.Contains("tag:web"), "the renamed, tagged peer");
        Assert.EndsWith(".weft.internal", view.Peers[two.DeviceId!].Fqdn);
        Assert.StartsWith("web.", view.Peers[two.DeviceId!].Fqdn);
        await two.WaitForNetMap(v => v.Self!.Name == "web", "its own new name");
    }
}
