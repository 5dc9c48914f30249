using System.Net;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>
/// A reconnect names the device it was (RegisterRequest's resume hint), so that the coordinator goes to
/// its tailnet straight. The hint is checked against the machine key: a stale, borrowed or malformed one
/// never gets a machine any device but its own, and changes nothing stored.
/// </summary>
public class DeviceResumeTests(SharedCoordinator coordinator) : IClassFixture<SharedCoordinator>
{
    private HttpClient Http => coordinator.Http;

    [Fact]
    public async Task A_reconnect_that_names_its_device_gets_that_device_and_stores_nothing()
    {
        var tailnet = await coordinator.NewTailnet("resume");
        var key = await Http.CreateAuthKey(tailnet, reusable: true);
        using var machine = Curve25519PrivateKey.Generate();
        using var node = Curve25519PrivateKey.Generate();
        var joined = await RegisterOnNewStream(machine, node, authKey: key.Key);
        Assert.Equal(RegisterResult.Types.Status.Authorized, joined.Status);
        var stored = await Http.DevicesSnapshot(tailnet);

        var resumed = await RegisterOnNewStream(machine, node, resumeTailnetId: joined.TailnetId, resumeDeviceId: joined.DeviceId);

        Assert.Equal(RegisterResult.Types.Status.Authorized, resumed.Status);
        Assert.Equal((joined.DeviceId, joined.TailnetId, joined.Name), (resumed.DeviceId, resumed.TailnetId, resumed.Name));
        Assert.Equal(joined.Addresses, resumed.Addresses);
        Assert.Equal(stored, await Http.DevicesSnapshot(tailnet));
    }

    [Fact]
    public async Task A_hint_naming_another_machines_device_gets_the_machine_its_own_device_or_none()
    {
        var tailnet = await coordinator.NewTailnet("resume-victim");
        using var victimMachine = Curve25519PrivateKey.Generate();
        using var victimNode = Curve25519PrivateKey.Generate();
        var victim = await RegisterOnNewStream(victimMachine, victimNode, authKey: (await Http.CreateAuthKey(tailnet)).Key);
        Assert.Equal(RegisterResult.Types.Status.Authorized, victim.Status);
        var stored = await Http.DevicesSnapshot(tailnet);

        // A machine that never registered, with no key: the device is not its, so it is answered as if it
        // had named none (a registration without a key must name a tailnet).
        using var strangerMachine = Curve25519PrivateKey.Generate();
        using var strangerNode = Curve25519PrivateKey.Generate();
        var stranger = await RegisterOnNewStream(strangerMachine, strangerNode, resumeTailnetId: victim.TailnetId, resumeDeviceId: victim.DeviceId);
        Assert.Equal(RegisterResult.Types.Status.Refused, stranger.Status);
        Assert.Equal(ControlErrorCodes.InvalidRequest, stranger.RefusalCode);
        Assert.Equal("", stranger.DeviceId);

        // Even with the victim's node key: the device is found by the machine key the handshake proved.
        var impostor = await RegisterOnNewStream(strangerMachine, victimNode, resumeTailnetId: victim.TailnetId, resumeDeviceId: victim.DeviceId);
        Assert.NotEqual(RegisterResult.Types.Status.Authorized, impostor.Status);
        Assert.Equal("", impostor.DeviceId);

        // A machine of another tailnet that names the victim's device: its own device, in its own tailnet.
        var otherTailnet = await coordinator.NewTailnet("resume-other");
        using var otherMachine = Curve25519PrivateKey.Generate();
        using var otherNode = Curve25519PrivateKey.Generate();
        var other = await RegisterOnNewStream(otherMachine, otherNode, authKey: (await Http.CreateAuthKey(otherTailnet)).Key);
        var otherResumed = await RegisterOnNewStream(otherMachine, otherNode, resumeTailnetId: victim.TailnetId, resumeDeviceId: victim.DeviceId);
        Assert.Equal(RegisterResult.Types.Status.Authorized, otherResumed.Status);
        Assert.Equal((other.DeviceId, otherTailnet), (otherResumed.DeviceId, otherResumed.TailnetId));

        Assert.Equal(stored, await Http.DevicesSnapshot(tailnet));
    }

    [Fact]
    public async Task A_hint_to_a_deleted_device_is_answered_as_if_none_were_given_and_a_key_joins_the_machine_anew()
    {
        var tailnet = await coordinator.NewTailnet("resume-deleted");
        var key = await Http.CreateAuthKey(tailnet, reusable: true);
        using var machine = Curve25519PrivateKey.Generate();
        using var node = Curve25519PrivateKey.Generate();
        var joined = await RegisterOnNewStream(machine, node, authKey: key.Key);
        Assert.Equal(HttpStatusCode.NoContent, (await Http.DeleteAsync($"/api/v1/tailnets/{tailnet}/devices/{joined.DeviceId}")).StatusCode);
        // The tailnet's release of the machine's binding travels on its own: the reconnect may find it still there.
        await coordinator.HoldStaleBinding(machine.PublicKey, tailnet, joined.DeviceId);

        var stale = await RegisterOnNewStream(machine, node, resumeTailnetId: joined.TailnetId, resumeDeviceId: joined.DeviceId);
        Assert.Equal(RegisterResult.Types.Status.Refused, stale.Status);
        Assert.Equal(ControlErrorCodes.InvalidRequest, stale.RefusalCode);
        Assert.Empty((await Http.ListDevices(tailnet)).Devices);
        Assert.IsType<Rejection>(await coordinator.MachineIndexEntry(machine.PublicKey));

        var again = await RegisterOnNewStream(machine, node, authKey: key.Key);
        Assert.Equal(RegisterResult.Types.Status.Authorized, again.Status);
        Assert.NotEqual(joined.DeviceId, again.DeviceId);
    }

    [Theory]
    [InlineData("tn_abc", "")]
    [InlineData("", "dev_abc")]
    [InlineData("tn_abc", "abc")]
    [InlineData("dev_abc", "tn_abc")]
    [InlineData("tn_ABC", "dev_abc")]
    [InlineData("tn_a/../b", "dev_abc")]
    [InlineData("tn_abc", "dev_abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghij")]
    public async Task A_malformed_hint_is_refused_with_what_is_wrong(string resumeTailnetId, string resumeDeviceId)
    {
        using var machine = Curve25519PrivateKey.Generate();
        using var node = Curve25519PrivateKey.Generate();
        var refused = await RegisterOnNewStream(machine, node, resumeTailnetId: resumeTailnetId, resumeDeviceId: resumeDeviceId);
        Assert.Equal(RegisterResult.Types.Status.Refused, refused.Status);
        Assert.Equal(ControlErrorCodes.InvalidRequest, refused.RefusalCode);
        Assert.Contains("resume_tailnet_id and resume_device_id", refused.RefusalMessage);
    }

    /// <summary>One registration on a stream of its own, as an agent's reconnect makes it.</summary>
    private async Task<RegisterResult> RegisterOnNewStream(Curve25519PrivateKey machine, Curve25519PrivateKey node, string authKey = "",
        string resumeTailnetId = "", string resumeDeviceId = "")
    {
        await using var stream = await RawControlStream.OpenAsync(coordinator.Control);
        await stream.Handshake(machine);
        return await stream.Register(machine, node, authKey: authKey, resumeTailnetId: resumeTailnetId, resumeDeviceId: resumeDeviceId);
    }
}
