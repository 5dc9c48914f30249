using System.Collections.Immutable;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;
using Weft.Contracts.Control;

using static Weft.Cluster.Tests.Tailnets.TailnetDecisions;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>The pure rules of users, auth keys, registration and the device index.</summary>
public class TailnetMembersTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private const string T = "tn_acme";

    private static string Hex(char c) => new(c, 64);

    /// <summary>Who the device sees under the tailnet's policy (the default: everyone active).</summary>
    private static IEnumerable<string> PeersOf(TailnetState state, string deviceId) =>
        Weft.Cluster.Policy.PolicyEngine.Compile(state.Policy, state.PolicyDevices()).VisiblePeers(deviceId);

    private static TailnetState Active() =>
        TailnetState.Unborn(T).Apply(new TailnetCreated(TailnetRules.DefaultSettings("acme"), Now));

    private static TailnetState WithKey(TailnetState state, string keyId, bool reusable = false, bool ephemeral = false, string[]? tags = null, TimeSpan? lifetime = null) =>
        Run(state, new CreateAuthKey(T, keyId, "hash-" + keyId, null, reusable, ephemeral, [.. tags ?? []], Now + (lifetime ?? TimeSpan.FromDays(1)), "", Now));

    private static RegisterDevice Register(string deviceId, char machine, char node, string? keyId, DateTimeOffset? at = null) =>
        new(T, deviceId, Hex(machine), Hex(node), "", deviceId, "linux", keyId, keyId is null ? null : "hash-" + keyId, at ?? Now);

    [Fact]
    public void A_key_registers_an_active_device_with_the_next_addresses_and_an_expiry()
    {
        var state = WithKey(Active(), "k1", reusable: true);

        state = Run(state, Register("dev_a", 'a', '1', "k1"));
        state = Run(state, Register("dev_b", 'b', '2', "k1"));

        var a = state.Devices["dev_a"];
        var b = state.Devices["dev_b"];
        Assert.Equal(DeviceStatus.Active, a.Status);
        Assert.Equal("100.64.0.1", a.Ipv4);
        Assert.Equal("fd7a:115c:a1e0::6440:1", a.Ipv6);
        Assert.Equal("100.64.0.2", b.Ipv4);
        Assert.Equal(Now.AddDays(TailnetRules.DefaultSettings("acme").NodeKeyExpiryDays), a.KeyExpiry);
        Assert.Equal(2, state.AuthKeys["k1"].Uses);
        Assert.Equal(["dev_b"], PeersOf(state, "dev_a"));
    }

    [Fact]
    public void Addresses_skip_dot_zero_and_dot_255_and_are_not_reused_at_once()
    {
        var state = WithKey(Active(), "k", reusable: true);
        for (var i = 0; i < 300; i++) state = Run(state, new RegisterDevice(T, $"dev_{i:000}", $"{i:x64}", $"{i + 1000:x64}", "", "h", "linux", "k", "hash-k", Now));

        var addresses = state.Devices.Values.Select(d => d.Ipv4).ToList();
        Assert.Equal(300, addresses.Distinct().Count());
        Assert.DoesNotContain(addresses, a => a.EndsWith(".0") || a.EndsWith(".255"));
        Assert.Equal(300, state.Devices.Values.Select(d => d.Ipv6).Distinct().Count());

        var freed = state.Devices["dev_000"].Ipv4;
        state = Run(state, new DeleteDevice(T, "dev_000"));
        state = Run(state, new RegisterDevice(T, "dev_new", Hex('f'), Hex('e'), "", "h", "linux", "k", "hash-k", Now));
        Assert.NotEqual(freed, state.Devices["dev_new"].Ipv4);
    }

    [Fact]
    public void A_new_device_skips_the_next_address_in_line_when_a_device_holds_it_and_takes_no_name_twice()
    {
        var state = WithKey(Active(), "k", reusable: true);
        state = Run(state, Register("dev_a", 'a', '1', "k") with { Hostname = "web" });
        state = Run(state, Register("dev_b", 'b', '2', "k") with { Hostname = "db" });
        state = Run(state, Register("dev_c", 'c', '3', "k") with { Hostname = "db" });
        Assert.Equal(["100.64.0.1", "100.64.0.2", "100.64.0.3"], state.Devices.Values.Select(d => d.Ipv4));
        Assert.Equal(["web", "db", "db-2"], state.Devices.Values.Select(d => d.Name));

        // Where the search starts can point at a held address (after the pool wrapped around): the next free one is taken.
        state = Run(state with { NextAddressOffset = 2 }, Register("dev_d", 'd', '4', "k") with { Hostname = "web" });
        Assert.Equal("100.64.0.4", state.Devices["dev_d"].Ipv4);
        Assert.Equal("web-2", state.Devices["dev_d"].Name);
        Assert.Equal(4, state.Devices.Values.Select(d => d.Ipv4).Distinct().Count());
    }

    [Fact]
    public void Every_kind_of_bad_key_is_refused_with_its_own_code()
    {
        var state = WithKey(Active(), "once");
        state = WithKey(state, "short", lifetime: TimeSpan.FromMinutes(1));
        state = WithKey(state, "revoked");
        state = Run(state, new RevokeAuthKey(T, "revoked"));
        state = Run(state, Register("dev_a", 'a', '1', "once"));

        Assert.Equal(ControlErrorCodes.AuthKeyUsed, Refused(state, Register("dev_b", 'b', '2', "once")).Code);
        Assert.Equal(ControlErrorCodes.AuthKeyExpired, Refused(state, Register("dev_b", 'b', '2', "short", Now.AddMinutes(2))).Code);
        Assert.Equal(ControlErrorCodes.AuthKeyRevoked, Refused(state, Register("dev_b", 'b', '2', "revoked")).Code);
        Assert.Equal(ControlErrorCodes.AuthKeyUnknown, Refused(state, Register("dev_b", 'b', '2', "nope")).Code);
        Assert.Equal(ControlErrorCodes.AuthKeyUnknown, Refused(state, Register("dev_b", 'b', '2', "once") with { AuthKeySecretHash = "wrong" }).Code);
    }

    private static TailnetState Keyless() =>
        TailnetState.Unborn(T).Apply(new TailnetCreated(TailnetRules.DefaultSettings("acme") with { KeylessRegistration = true }, Now));

    /// <summary>A distinct machine and node key for the n-th stranger.</summary>
    private static RegisterDevice Stranger(int n, DateTimeOffset at) =>
        new(T, $"dev_s{n}", n.ToString("x64"), (n + 100_000).ToString("x64"), "", "web", "linux", null, null, at, RegisteredFrom: "198.18.7.7");

    [Fact]
    public void Without_a_key_a_device_waits_invisible_with_no_address_and_no_name_until_approved()
    {
        var state = WithKey(Keyless(), "k");
        state = Run(state, Register("dev_a", 'a', '1', "k"));
        state = Run(state, Register("dev_p", 'p', '9', null) with { Hostname = "db", RegisteredFrom = "198.18.0.9" });

        var waiting = state.Devices["dev_p"];
        Assert.Equal(DeviceStatus.Pending, waiting.Status);
        Assert.Equal(("", "", ""), (waiting.Ipv4, waiting.Ipv6, waiting.Name));
        Assert.Equal("198.18.0.9", waiting.RegisteredFrom);
        Assert.Empty(PeersOf(state, "dev_a"));
        Assert.Empty(PeersOf(state, "dev_p"));

        state = Run(state, new ApproveDevice(T, "dev_p", Now));
        var approved = state.Devices["dev_p"];
        Assert.Equal(DeviceStatus.Active, approved.Status);
        Assert.NotNull(approved.KeyExpiry);
        Assert.Equal(("100.64.0.2", "fd7a:115c:a1e0::6440:2", "db"), (approved.Ipv4, approved.Ipv6, approved.Name));
        Assert.Equal(["dev_p"], PeersOf(state, "dev_a"));
    }

    [Fact]
    public void A_tailnet_takes_devices_without_a_key_only_when_its_admin_turned_that_on()
    {
        var refused = Refused(Active(), Register("dev_p", 'p', '9', null));
        Assert.Equal(ControlErrorCodes.AuthKeyUnknown, refused.Code);

        var state = Run(Active(), new ChangeTailnetSettings(T, KeylessRegistration: true));
        Assert.True(state.Settings.KeylessRegistration);
        state = Run(state, Register("dev_p", 'p', '9', null));
        Assert.Equal(DeviceStatus.Pending, state.Devices["dev_p"].Status);
    }

    [Fact]
    public void A_waiting_device_squats_no_name_the_real_server_gets_it()
    {
        var state = WithKey(Keyless(), "k");
        state = Run(state, Stranger(1, Now)); // hostname "web", no key
        state = Run(state, Register("dev_real", 'r', '8', "k") with { Hostname = "web" });
        Assert.Equal("web", state.Devices["dev_real"].Name);

        state = Run(state, new ApproveDevice(T, "dev_s1", Now));
        Assert.Equal("web-2", state.Devices["dev_s1"].Name);
    }

    [Fact]
    public void Waiting_devices_are_capped_and_rate_limited_while_keyed_devices_keep_joining_and_bulk_delete_frees_room()
    {
        var state = WithKey(Keyless(), "k", reusable: true);
        var at = Now;
        var n = 0;
        // At most 20 new waiting devices a minute...
        for (; n < TailnetState.MaxPendingPerWindow; n++) state = Run(state, Stranger(n, at));
        Assert.Equal(ControlErrorCodes.RateLimited, Refused(state, Stranger(n, at)).Code);
        // ...and at most 100 waiting in all.
        while (n < TailnetState.MaxPendingDevices)
        {
            at += TailnetState.PendingWindow;
            for (var i = 0; i < TailnetState.MaxPendingPerWindow; i++, n++) state = Run(state, Stranger(n, at));
        }
        at += TailnetState.PendingWindow;
        Assert.Equal(ControlErrorCodes.RateLimited, Refused(state, Stranger(n, at)).Code);
        Assert.Equal(TailnetState.MaxPendingDevices, state.Devices.Values.Count(d => d.Status == DeviceStatus.Pending));

        // A device with a key joins whatever the flood.
        state = Run(state, Register("dev_legit", 'l', '7', "k", at));
        Assert.Equal(DeviceStatus.Active, state.Devices["dev_legit"].Status);

        // Bulk delete takes the waiting devices named, and only those still waiting.
        var waiting = state.Devices.Values.Where(d => d.Status == DeviceStatus.Pending).Select(d => d.DeviceId).Append("dev_legit").ToList();
        state = Run(state, new DeletePendingDevices(T, waiting));
        Assert.Equal(["dev_legit"], state.Devices.Keys);
        state = Run(state, Stranger(n, at));
        Assert.Equal(DeviceStatus.Pending, state.Devices[$"dev_s{n}"].Status);
    }

    [Fact]
    public void A_waiting_device_that_comes_back_with_a_key_gets_an_address_and_a_name()
    {
        var state = WithKey(Keyless(), "k");
        state = Run(state, Register("dev_p", 'p', '9', null));

        state = Run(state, Register("dev_other", 'p', '9', "k"));

        var device = Assert.Single(state.Devices.Values);
        Assert.Equal(("dev_p", DeviceStatus.Active, "100.64.0.1", "dev-p"), (device.DeviceId, device.Status, device.Ipv4, device.Name));
    }

    [Fact]
    public void The_same_machine_registering_again_is_the_same_device()
    {
        var state = WithKey(Active(), "k");
        state = Run(state, Register("dev_a", 'a', '1', "k"));

        var again = state.Process(Register("dev_other", 'a', '1', null) with { Hostname = "dev_a" });
        Assert.Null(again.Rejection);
        Assert.Empty(again.Events);

        // Reconnecting after an upgrade: the same device, with what it reports about itself brought up to date.
        var upgraded = state.Process(Register("dev_other", 'a', '1', null) with { Hostname = "dev_a", AgentVersion = "weft-agent 0.6" });
        Assert.Equal(new DeviceHostinfoChanged("dev_a", "dev_a", "linux", "weft-agent 0.6"), Assert.Single(upgraded.Events));
        Assert.Equal(ControlErrorCodes.NodeKeyMismatch, Refused(state, Register("dev_other", 'a', '7', null)).Code);
        Assert.Equal(ControlErrorCodes.NodeKeyInUse, Refused(state, Register("dev_c", 'c', '1', null)).Code);
    }

    [Fact]
    public void Tags_come_from_the_key_and_tagged_devices_do_not_expire()
    {
        var state = Active().Apply(new PolicyChanged("""{ "tagOwners": { "tag:web": [], "tag:db": [] } }""", 2, Now));
        state = WithKey(state, "k", tags: ["tag:web", "tag:db", "tag:web"]);
        state = Run(state, Register("dev_a", 'a', '1', "k"));

        Assert.Equal(["tag:db", "tag:web"], state.Devices["dev_a"].Tags.ToArray());
        Assert.Null(state.Devices["dev_a"].KeyExpiry);

        state = Run(state, new SetDeviceTags(T, "dev_a", [], Now));
        Assert.Equal(Now.AddDays(state.Settings.NodeKeyExpiryDays), state.Devices["dev_a"].KeyExpiry);
        Assert.Equal(ApiErrorCodes.InvalidRequest, Refused(state, new SetDeviceTags(T, "dev_a", ["web"], Now)).Code);
    }

    [Fact]
    public void Rotation_needs_the_current_key_and_a_key_nobody_uses()
    {
        var state = WithKey(Active(), "k", reusable: true);
        state = Run(state, Register("dev_a", 'a', '1', "k"));
        state = Run(state, Register("dev_b", 'b', '2', "k"));

        Assert.Equal(ControlErrorCodes.NodeKeyProofInvalid, Refused(state, new RotateDeviceNodeKey(T, "dev_a", Hex('9'), Hex('3'), Now)).Code);
        Assert.Equal(ControlErrorCodes.NodeKeyInUse, Refused(state, new RotateDeviceNodeKey(T, "dev_a", Hex('1'), Hex('2'), Now)).Code);

        state = Run(state, new RotateDeviceNodeKey(T, "dev_a", Hex('1'), Hex('3'), Now.AddDays(1)));
        Assert.Equal(Hex('3'), state.Devices["dev_a"].NodeKey);
        Assert.Equal(Now.AddDays(1 + state.Settings.NodeKeyExpiryDays), state.Devices["dev_a"].KeyExpiry);

        // The same rotation asked again (its answer lost, or asked twice) is answered as the first was, and changes nothing.
        var again = state.Process(new RotateDeviceNodeKey(T, "dev_a", Hex('1'), Hex('3'), Now.AddDays(2)));
        Assert.Null(again.Rejection);
        Assert.Empty(again.Events);
    }

    [Fact]
    public void A_key_that_lapsed_before_the_sweep_marked_it_neither_rotates_nor_reconnects_but_an_auth_key_reauthorizes_it()
    {
        var state = WithKey(Active(), "k", reusable: true, lifetime: TimeSpan.FromDays(365));
        state = Run(state, Register("dev_a", 'a', '1', "k"));
        var due = state.Devices["dev_a"].KeyExpiry!.Value;
        var after = due.AddMinutes(1);
        Assert.Equal(DeviceStatus.Active, state.Devices["dev_a"].Status); // no sweep ran: the tailnet was down, or just started

        // Rotating now would give the lapsed key a new lifetime, and the re-authentication expiry asks for would never come.
        Assert.Equal(ControlErrorCodes.DeviceExpired, Refused(state, new RotateDeviceNodeKey(T, "dev_a", Hex('1'), Hex('3'), after)).Code);
        Assert.Equal(ControlErrorCodes.DeviceExpired, Refused(state, Register("dev_x", 'a', '1', null, after)).Code);
        Assert.Null(state.Process(new RotateDeviceNodeKey(T, "dev_a", Hex('1'), Hex('3'), due.AddMinutes(-1))).Rejection);

        // The auth key it joined with, presented again, re-authorizes it with a fresh expiry (it is not "the same registration again").
        state = Run(state, Register("dev_x", 'a', '1', "k", after));
        Assert.Equal(Hex('1'), state.Devices["dev_a"].NodeKey);
        Assert.Equal(after.AddDays(state.Settings.NodeKeyExpiryDays), state.Devices["dev_a"].KeyExpiry);
    }

    [Fact]
    public void A_stored_policy_with_sections_a_later_version_may_accept_is_enforced_without_them_not_closed()
    {
        // Stored by a later version (a rolling upgrade, or a rollback): ssh grants nothing here, and the acls still stand.
        var state = Active().Apply(new PolicyChanged("""
            { "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:22"] } ],
              "ssh": [ { "action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["root"] } ] }
            """, 2, Now));

        Assert.Single(state.Policy.Rules);
        Assert.Equal(Contracts.Admin.ApiErrorCodes.PolicyInvalid, Refused(state, new SetPolicy(T, state.PolicyText!.Replace("*:22", "*:23"), Now)).Code);
        Assert.Empty(state.Validate(state.PolicyText!).Issues); // the text in force, read and set again, is not refused
        Assert.Equal("ssh", Assert.Single(state.StoredPolicyWarnings()).Path);
    }

    [Fact]
    public void Due_keys_expire_and_expired_devices_leave_everyones_view()
    {
        var state = WithKey(Active(), "k", reusable: true, lifetime: TimeSpan.FromDays(365));
        state = Run(state, Register("dev_a", 'a', '1', "k"));
        state = Run(state, Register("dev_b", 'b', '2', "k", Now.AddDays(10)));
        var dueA = state.Devices["dev_a"].KeyExpiry!.Value;

        state = Run(state, new ExpireDueKeys(T, dueA));

        Assert.Equal(DeviceStatus.Expired, state.Devices["dev_a"].Status);
        Assert.Equal(DeviceStatus.Active, state.Devices["dev_b"].Status);
        Assert.Empty(PeersOf(state, "dev_b"));
        Assert.Equal(ControlErrorCodes.DeviceExpired, Refused(state, Register("dev_x", 'a', '1', null)).Code);
        // An auth key re-authorises it, with its old identity and addresses.
        var address = state.Devices["dev_a"].Ipv4;
        state = Run(state, Register("dev_x", 'a', '4', "k", dueA));
        Assert.Equal(DeviceStatus.Active, state.Devices["dev_a"].Status);
        Assert.Equal(address, state.Devices["dev_a"].Ipv4);
        Assert.False(state.Devices.ContainsKey("dev_x"));
    }

    [Fact]
    public void Users_own_keys_and_cannot_be_deleted_while_they_own_devices()
    {
        var state = Run(Active(), new CreateUser(T, "usr_a", "alice@example.com", Now));
        Assert.Equal(ApiErrorCodes.Conflict, Refused(state, new CreateUser(T, "usr_b", "ALICE@example.com", Now)).Code);
        state = Run(state, new CreateAuthKey(T, "k", "hash-k", "usr_a", false, false, [], Now.AddDays(1), "", Now));
        state = Run(state, Register("dev_a", 'a', '1', "k"));
        Assert.Equal("usr_a", state.Devices["dev_a"].UserId);

        Assert.Equal(ApiErrorCodes.Conflict, Refused(state, new DeleteUser(T, "usr_a")).Code);
        state = Run(state, new DeleteDevice(T, "dev_a"));
        state = Run(state, new DeleteUser(T, "usr_a"));
        Assert.True(state.AuthKeys["k"].Revoked);
    }

    [Fact]
    public void A_deleted_user_and_a_revoked_auth_key_are_not_created_again_by_their_creation_sent_again_and_a_new_id_still_is()
    {
        var create = new CreateUser(T, "usr_a", "alice@example.com", Now);
        var key = new CreateAuthKey(T, "k", "hash-k", null, true, false, [], Now.AddDays(1), "", Now);
        var state = Run(Run(Active(), create), key);
        Assert.Empty(state.Process(create).Events); // a retry before the deletion: the same user
        Assert.Empty(state.Process(key).Events);

        state = Run(Run(state, new DeleteUser(T, "usr_a")), new RevokeAuthKey(T, "k"));
        Assert.Contains("was deleted", Refused(state, create).Message);
        Assert.Contains("was revoked", Refused(state, key).Message);
        Assert.Contains("usr_a", state.DeletedUserIds);

        // The name itself is free: a new creation (a new id) makes alice again.
        state = Run(state, create with { UserId = "usr_a2" });
        Assert.Equal("alice@example.com", state.Users["usr_a2"].Name);
    }

    [Fact]
    public void Auth_keys_spent_a_month_ago_are_forgotten_but_their_ids_are_never_issued_again_and_their_devices_stay()
    {
        var spent = new CreateAuthKey(T, "kspent", "hash-kspent", null, true, false, [], Now.AddDays(1), "ci job 1", Now);
        var revoked = spent with { KeyId = "krevoked", SecretHash = "hash-krevoked", ExpiresAt = Now.AddDays(2) };
        var live = spent with { KeyId = "klive", SecretHash = "hash-klive", ExpiresAt = Now.AddDays(300) };
        var state = Run(Run(Run(Active(), spent), revoked), live);
        state = Run(state, Register("dev_ci", 'c', '1', "kspent"));
        state = Run(state, new RevokeAuthKey(T, "krevoked"));

        // A month after expiry is not yet past retention; a month and a day is, revoked or not.
        Assert.Empty(state.Process(new ForgetSpentAuthKeys(T, Now.AddDays(1) + TailnetState.SpentAuthKeyRetention - TimeSpan.FromMinutes(1))).Events);
        state = Run(state, new ForgetSpentAuthKeys(T, Now.AddDays(2) + TailnetState.SpentAuthKeyRetention));
        Assert.Equal(["klive"], state.AuthKeys.Keys);
        Assert.Equal(["krevoked", "kspent"], state.ForgottenAuthKeyIds);
        Assert.True(state.Devices.ContainsKey("dev_ci")); // the device it admitted stays
        Assert.Empty(state.Process(new ForgetSpentAuthKeys(T, Now.AddDays(40))).Events);

        // Its creation sent again (the same Idempotency-Key) is refused: the secret must not admit anyone again.
        Assert.Contains("not issued again", Refused(state, spent with { At = Now.AddDays(40), ExpiresAt = Now.AddDays(41) }).Message);
        Assert.Equal(ControlErrorCodes.AuthKeyUnknown, Refused(state, Register("dev_late", 'l', '2', "kspent", Now.AddDays(40))).Code);
    }

    [Fact]
    public void Only_an_ephemeral_device_is_removed_by_the_ephemeral_timer()
    {
        var state = WithKey(Active(), "eph", ephemeral: true);
        state = WithKey(state, "plain");
        state = Run(state, Register("dev_e", 'e', '1', "eph"));
        state = Run(state, Register("dev_p", 'p', '2', "plain"));

        Assert.Empty(state.Process(new RemoveEphemeralDevice(T, "dev_p", Now)).Events);
        state = Run(state, new RemoveEphemeralDevice(T, "dev_e", Now));
        Assert.False(state.Devices.ContainsKey("dev_e"));
        Assert.True(state.Devices.ContainsKey("dev_p"));
    }

    [Fact]
    public void Bad_endpoints_are_refused()
    {
        var state = Run(WithKey(Active(), "k"), Register("dev_a", 'a', '1', "k"));

        Assert.Equal(ApiErrorCodes.InvalidRequest, Refused(state, new UpdateDeviceEndpoints(T, "dev_a", ["not-an-endpoint"], 0, "")).Code);
        Assert.Equal(ApiErrorCodes.InvalidRequest, Refused(state, new UpdateDeviceEndpoints(T, "dev_a", ["198.18.0.1:0"], 0, "")).Code);
        Assert.Equal(ApiErrorCodes.InvalidRequest,
            Refused(state, new UpdateDeviceEndpoints(T, "dev_a", [.. Enumerable.Range(1, TailnetState.MaxEndpoints + 1).Select(i => $"198.18.0.1:{i}")], 0, "")).Code);
    }
}
