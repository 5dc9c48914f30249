using System.Collections.Immutable;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Control;

using static Weft.Cluster.Tests.Tailnets.TailnetDecisions;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>
/// Interactive device login in the tailnet's pure state: a device without a key in a tailnet with a
/// provider waits with a login link; signing in makes it its person's; links are single-use and
/// expire; a provider's groups become policy groups; and (StoredRecordSerializerTests) all of it survives a snapshot.
/// </summary>
public class TailnetLoginTests
{
    private const string T = "tn_acme";
    private const string Issuer = "https://id.example.com";
    private static readonly DateTimeOffset Now = new(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);
    private static readonly SignedInIdentity Alice = new(Issuer, "sub-alice", "alice@example.com", ["eng", "admins"]);
    private static readonly SignedInIdentity Bob = new(Issuer, "sub-bob", "bob@example.com", ["ops"]);

    private static string Hex(char c) => new(c, 64);

    private static TailnetState WithProvider() =>
        Run(TailnetState.Unborn(T).Apply(new TailnetCreated(TailnetRules.DefaultSettings("acme"), Now)),
            new SetSso(T, new SsoSettings(Issuer, "weft", "secret", [], [], "", [])));

    private static RegisterDevice Keyless(string deviceId, char machine, char node, string loginId, DateTimeOffset? at = null) =>
        new(T, deviceId, Hex(machine), Hex(node), Hex('d'), "laptop-" + machine, "linux", null, null, at ?? Now)
        {
            NewLoginId = loginId, LoginExpiresAt = (at ?? Now).AddMinutes(10),
        };

    private static CompleteDeviceLogin SignIn(string loginId, SignedInIdentity who, DateTimeOffset? at = null, string newUserId = "usr_new") =>
        new(T, loginId, who, newUserId, at ?? Now.AddMinutes(1));

    [Fact]
    public void A_device_without_a_key_waits_with_one_login_link_and_signing_in_makes_it_its_persons_and_active()
    {
        var state = Run(WithProvider(), Keyless("dev_1", 'a', 'b', "login_1"));
        var waiting = state.Devices["dev_1"];
        Assert.Equal(DeviceStatus.Pending, waiting.Status);
        Assert.Equal("", waiting.Ipv4); // no address until someone signs in
        Assert.Equal("login_1", state.OpenLoginFor("dev_1", Hex('b'), Now)!.LoginId);

        // Asking again (the agent polls) keeps the same link: nothing new is stored.
        Assert.Empty(state.Process(Keyless("dev_x", 'a', 'b', "login_2", Now.AddSeconds(2))).Events);
        Assert.IsType<DeviceLoginInfo>(state.LoginInfo(new GetDeviceLogin(T, "login_1", Now.AddSeconds(3))));

        state = Run(state, SignIn("login_1", Alice, newUserId: "usr_alice"));
        var device = state.Devices["dev_1"];
        Assert.Equal(DeviceStatus.Active, device.Status);
        Assert.Equal("usr_alice", device.UserId);
        Assert.StartsWith("100.64.", device.Ipv4);
        Assert.Equal(Now.AddMinutes(1).AddDays(state.Settings.NodeKeyExpiryDays), device.KeyExpiry);
        var user = state.Users["usr_alice"];
        Assert.Equal(("alice@example.com", Issuer, "sub-alice"), (user.Name, user.Issuer, user.Subject));
        Assert.Equal<string>(["admins", "eng"], user.Groups);
        Assert.Null(state.OpenLoginFor("dev_1", Hex('b'), Now.AddMinutes(1)));

        // The same sign-in again (its answer was lost) changes nothing; anyone else using the link is refused.
        Assert.Empty(state.Process(SignIn("login_1", Alice)).Events);
        Assert.Equal(LoginErrorCodes.Used, Refused(state, SignIn("login_1", Bob)).Code);
        Assert.Equal(LoginErrorCodes.Used, Assert.IsType<Rejection>(state.LoginInfo(new GetDeviceLogin(T, "login_1", Now.AddMinutes(2)))).Code);
    }

    [Fact]
    public void A_link_expires_a_new_one_replaces_it_and_unknown_links_other_issuers_and_disallowed_names_are_refused()
    {
        var state = Run(WithProvider(), Keyless("dev_1", 'a', 'b', "login_1"));
        var late = Now.AddMinutes(11);
        Assert.Equal(LoginErrorCodes.Expired, Refused(state, SignIn("login_1", Alice, late)).Code);
        Assert.Equal(LoginErrorCodes.Expired, Assert.IsType<Rejection>(state.LoginInfo(new GetDeviceLogin(T, "login_1", late))).Code);

        // The agent asks again after the expiry: a new link; the old one still says it expired.
        state = Run(state, Keyless("dev_1", 'a', 'b', "login_2", late));
        Assert.Equal("login_2", state.OpenLoginFor("dev_1", Hex('b'), late)!.LoginId);
        Assert.Equal(LoginErrorCodes.Expired, Refused(state, SignIn("login_1", Alice, late)).Code);

        Assert.Equal(LoginErrorCodes.Unknown, Refused(state, SignIn("login_nope", Alice, late)).Code);
        Assert.Equal(LoginErrorCodes.WrongIssuer, Refused(state, SignIn("login_2", Alice with { Issuer = "https://rogue.example" }, late)).Code);

        // A person whose email another user of the tailnet already has as name cannot take that name.
        state = Run(state, new CreateUser(T, "usr_admin", "carol@example.com", Now));
        state = Run(state, SignIn("login_2", new SignedInIdentity(Issuer, "sub-x", "dave@example.com", []), late, "usr_dave"));
        state = Run(state, Keyless("dev_2", 'c', 'e', "login_3", late));
        Assert.Equal(LoginErrorCodes.NameTaken, Refused(state, SignIn("login_3", new SignedInIdentity(Issuer, "sub-y", "DAVE@example.com", []), late)).Code);
    }

    [Fact]
    public void Sign_ins_given_up_block_no_one_and_are_forgotten_an_hour_after_their_link_expired_while_one_still_waiting_stays()
    {
        // A hundred people start a sign-in over a day and give up (a closed browser, a refused domain, a reinstall).
        var state = WithProvider();
        for (var i = 0; i < TailnetState.MaxPendingDevices; i++)
            state = Run(state, Keyless($"dev_{i:d3}", 'a', 'b', $"login_{i:d3}", Now.AddMinutes(5 * i)) with { MachineKey = $"{i:x64}", NodeKey = $"{i + 1000:x64}" });
        var dayLater = Now.AddMinutes(5 * TailnetState.MaxPendingDevices);

        // None holds an open link any more: the next person is not refused as a flood.
        var next = Keyless("dev_next", 'z', 'Z', "login_next", dayLater);
        state = Run(state, next);
        Assert.Equal(DeviceStatus.Pending, state.Devices["dev_next"].Status);

        // Those whose link expired an hour ago or more are forgotten, with their links; the rest, and the one still signing in, stay.
        var forgotten = state.AbandonedSignIns(dayLater);
        Assert.NotEmpty(forgotten);
        Assert.All(forgotten, id => Assert.True(state.Logins.Values.Single(l => l.DeviceId == id).ExpiresAt + TailnetState.AbandonedSignInAfter <= dayLater));
        state = Run(state, new ForgetAbandonedSignIns(T, dayLater));
        Assert.All(forgotten, id => Assert.False(state.Devices.ContainsKey(id)));
        Assert.DoesNotContain(state.Logins.Values, l => forgotten.Contains(l.DeviceId));
        Assert.Equal(TailnetState.MaxPendingDevices + 1 - forgotten.Count, state.Devices.Count);
        Assert.Equal("login_next", state.OpenLoginFor("dev_next", Hex('Z'), dayLater)!.LoginId);

        // Once the last link is an hour past its expiry, all are gone; the person coming back starts over.
        var later = dayLater.AddMinutes(10) + TailnetState.AbandonedSignInAfter;
        state = Run(state, new ForgetAbandonedSignIns(T, later));
        Assert.Empty(state.Devices);
        Assert.Empty(state.AbandonedSignIns(later));
        state = Run(state, next with { NewDeviceId = "dev_again", NewLoginId = "login_again", At = later, LoginExpiresAt = later.AddMinutes(10) });
        Assert.Equal("login_again", state.OpenLoginFor("dev_again", Hex('Z'), later)!.LoginId);
    }

    [Fact]
    public void Without_a_provider_a_device_waiting_for_approval_is_never_forgotten_and_still_counts_toward_the_cap()
    {
        var state = Run(TailnetState.Unborn(T).Apply(new TailnetCreated(TailnetRules.DefaultSettings("acme") with { KeylessRegistration = true }, Now)),
            new RegisterDevice(T, "dev_1", Hex('a'), Hex('b'), Hex('d'), "laptop", "linux", null, null, Now));
        Assert.Equal(DeviceStatus.Pending, state.Devices["dev_1"].Status);
        Assert.Empty(state.AbandonedSignIns(Now.AddDays(365)));
        Assert.Empty(state.Process(new ForgetAbandonedSignIns(T, Now.AddDays(365))).Events);
    }

    [Fact]
    public void A_sign_in_is_decided_on_the_provider_settings_in_force_not_on_those_the_node_that_took_it_held()
    {
        // The node that took the provider's answer checked domains and groups from its own copy of the settings;
        // an admin narrowed them since. The tailnet holds the settings in force, and refuses.
        var state = Run(WithProvider(), Keyless("dev_1", 'a', 'b', "login_1"));
        state = Run(state, new SetSso(T, new SsoSettings(Issuer, "weft", "secret", ["corp.example"], [], "", [])));
        var outsider = state.Process(SignIn("login_1", Bob));
        Assert.Equal(LoginErrorCodes.NotAllowed, outsider.Rejection?.Code);
        Assert.Contains("corp.example", outsider.Rejection!.Message);
        Assert.Equal(LoginErrorCodes.NotAllowed, state.Process(new SignInUser(T, Bob, "usr_bob", Now.AddMinutes(1))).Rejection?.Code);
        Assert.Equal(DeviceStatus.Pending, state.Devices["dev_1"].Status);

        // Groups too; a person the settings admit signs in.
        state = Run(state, new SetSso(T, new SsoSettings(Issuer, "weft", "secret", [], ["eng"], "", [])));
        Assert.Equal(LoginErrorCodes.NotAllowed, state.Process(SignIn("login_1", Bob)).Rejection?.Code);
        state = Run(state, SignIn("login_1", Alice, newUserId: "usr_alice"));
        Assert.Equal(DeviceStatus.Active, state.Devices["dev_1"].Status);
    }

    [Fact]
    public void A_provider_that_spells_its_issuer_with_a_trailing_slash_signs_people_in()
    {
        var state = Run(WithProvider(), Keyless("dev_1", 'a', 'b', "login_1"));
        state = Run(state, SignIn("login_1", Alice with { Issuer = Issuer + "/" }, newUserId: "usr_alice")); // as Auth0 writes iss
        Assert.Equal(DeviceStatus.Active, state.Devices["dev_1"].Status);
    }

    [Fact]
    public void A_user_an_admin_created_by_email_takes_the_identity_of_their_first_sign_in_and_keeps_it()
    {
        var state = Run(WithProvider(), new CreateUser(T, "usr_alice", "alice@example.com", Now));
        state = Run(state, Keyless("dev_1", 'a', 'b', "login_1"));
        state = Run(state, SignIn("login_1", Alice, newUserId: "usr_unused"));
        Assert.Single(state.Users);
        Assert.Equal("sub-alice", state.Users["usr_alice"].Subject);
        Assert.Equal("usr_alice", state.Devices["dev_1"].UserId);

        // Her second device, and a changed email at the provider: the same user (issuer and subject), renamed.
        state = Run(state, Keyless("dev_2", 'c', 'e', "login_2"));
        state = Run(state, SignIn("login_2", Alice with { Email = "alice.smith@example.com" }, newUserId: "usr_unused2"));
        Assert.Single(state.Users);
        Assert.Equal("alice.smith@example.com", state.Users["usr_alice"].Name);
        Assert.Equal("usr_alice", state.Devices["dev_2"].UserId);
    }

    [Fact]
    public void An_expired_device_gets_a_link_and_its_persons_sign_in_renews_it_with_the_key_it_presented()
    {
        var state = Run(WithProvider(), Keyless("dev_1", 'a', 'b', "login_1"));
        state = Run(state, SignIn("login_1", Alice, newUserId: "usr_alice"));
        var address = state.Devices["dev_1"].Ipv4;
        state = Run(state, new ExpireDevice(T, "dev_1", Now.AddHours(1)));

        // Back with a new node key: a link for it.
        state = Run(state, Keyless("dev_ignored", 'a', 'f', "login_2", Now.AddHours(2)));
        Assert.Equal(DeviceStatus.Expired, state.Devices["dev_1"].Status);
        state = Run(state, SignIn("login_2", Alice, Now.AddHours(2)));
        var renewed = state.Devices["dev_1"];
        Assert.Equal((DeviceStatus.Active, Hex('f'), address), (renewed.Status, renewed.NodeKey, renewed.Ipv4));
        Assert.Equal(Now.AddHours(2).AddDays(state.Settings.NodeKeyExpiryDays), renewed.KeyExpiry);

        // An active device asking again with its key: nothing to sign in to.
        Assert.Empty(state.Process(Keyless("dev_ignored", 'a', 'f', "login_3", Now.AddHours(3))).Events);
        Assert.Equal(ControlErrorCodes.NodeKeyMismatch, Refused(state, Keyless("dev_ignored", 'a', '9', "login_3", Now.AddHours(3))).Code);
    }

    [Fact]
    public void A_device_whose_key_lapsed_before_the_sweep_marked_it_is_expired_by_its_reconnection_and_signs_in_again()
    {
        var state = Run(WithProvider(), Keyless("dev_1", 'a', 'b', "login_1"));
        state = Run(state, SignIn("login_1", Alice, newUserId: "usr_alice"));
        var lapsed = state.Devices["dev_1"].KeyExpiry!.Value.AddMinutes(1);

        // The same key, past its expiry: before, it reconnected as if nothing had happened until the sweep came.
        state = Run(state, Keyless("dev_ignored", 'a', 'b', "login_2", lapsed));
        Assert.Equal(DeviceStatus.Expired, state.Devices["dev_1"].Status);
        Assert.Equal("login_2", state.OpenLoginFor("dev_1", Hex('b'), lapsed)!.LoginId);

        state = Run(state, SignIn("login_2", Alice, lapsed.AddMinutes(1)));
        Assert.Equal(DeviceStatus.Active, state.Devices["dev_1"].Status);
        Assert.Equal(lapsed.AddMinutes(1).AddDays(state.Settings.NodeKeyExpiryDays), state.Devices["dev_1"].KeyExpiry);
    }

    [Fact]
    public void Without_a_provider_a_device_without_a_key_waits_for_approval_and_gets_no_link()
    {
        var state = TailnetState.Unborn(T).Apply(new TailnetCreated(TailnetRules.DefaultSettings("acme") with { KeylessRegistration = true }, Now));
        state = Run(state, Keyless("dev_1", 'a', 'b', "login_1"));
        Assert.Empty(state.Logins);
        Assert.Equal(DeviceStatus.Pending, state.Devices["dev_1"].Status);
        Assert.Equal(LoginErrorCodes.NoProvider, Refused(state, SignIn("login_1", Alice)).Code);
    }

    [Fact]
    public void The_providers_groups_are_policy_groups_beside_the_policys_own_and_a_policy_may_name_them_before_anyone_signs_in()
    {
        var state = WithProvider();
        const string policy = """
            {
              "groups": {"group:eng": ["carol@example.com"]},
              "acls": [
                {"action": "accept", "src": ["group:eng"], "dst": ["*:22"]},
                {"action": "accept", "src": ["group:ops"], "dst": ["*:443"]},
              ],
            }
            """;
        state = Run(state, new SetPolicy(T, policy, Now));
        Assert.Equal<string>(["carol@example.com"], state.Policy.Groups["group:eng"]);
        // Without the provider this policy would not parse (group:ops is the provider's only): removing it is refused.
        var refused = Refused(state, new RemoveSso(T));
        Assert.Equal(Contracts.Admin.ApiErrorCodes.Conflict, refused.Code);
        Assert.Contains("only the identity provider defines", refused.Message);

        state = Run(state, Keyless("dev_1", 'a', 'b', "login_1"));
        state = Run(state, SignIn("login_1", Alice, newUserId: "usr_alice"));
        Assert.Equal<string>(["alice@example.com", "carol@example.com"], state.Policy.Groups["group:eng"].Order());
        Assert.Equal<string>(["alice@example.com"], state.Policy.Groups["group:admins"]);

        // Once people signed in, their groups stay defined (they stay users), with or without the provider.
        state = Run(state, new RemoveSso(T));
        Assert.Equal<string>(["alice@example.com"], state.Policy.Groups["group:admins"]);
    }
}
