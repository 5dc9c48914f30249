using Weft.Cluster.Policy;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;

using static Weft.Cluster.Tests.Tailnets.TailnetDecisions;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>Roles (owner, admin, member, auditor): who may give which, and the autogroups they make in the policy.</summary>
public class TailnetRoleTests
{
    private const string T = "tn_acme";
    private static readonly DateTimeOffset Now = new(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);

    private static TailnetState WithUsers()
    {
        var state = TailnetState.Unborn(T).Apply(new TailnetCreated(TailnetRules.DefaultSettings("acme"), Now));
        state = Run(state, new CreateUser(T, "usr_alice", "alice@example.com", Now) { Role = UserRole.Owner, ByOwner = true });
        state = Run(state, new CreateUser(T, "usr_bob", "bob@example.com", Now));
        return Run(state, new CreateUser(T, "usr_carol", "carol@example.com", Now) { Role = UserRole.Auditor });
    }

    [Fact]
    public void Only_an_owner_deletes_an_owner_and_the_last_owner_is_not_deleted()
    {
        // The rule for a change of role held for a deletion too: an admin could delete the only owner (one with no
        // devices) and leave the tailnet with nobody who may make another.
        var state = WithUsers();
        Assert.Equal(ApiErrorCodes.Forbidden, Refused(state, new DeleteUser(T, "usr_alice", ByOwner: false)).Code);
        Assert.Equal(ApiErrorCodes.Conflict, Refused(state, new DeleteUser(T, "usr_alice", ByOwner: true)).Code);
        state = Run(state, new SetUserRole(T, "usr_bob", UserRole.Owner, ByOwner: true));
        Assert.Equal(ApiErrorCodes.Forbidden, Refused(state, new DeleteUser(T, "usr_alice", ByOwner: false)).Code);
        state = Run(state, new DeleteUser(T, "usr_alice", ByOwner: true));
        Assert.False(state.Users.ContainsKey("usr_alice"));
        state = Run(state, new DeleteUser(T, "usr_carol", ByOwner: false)); // an admin deletes others
        Assert.False(state.Users.ContainsKey("usr_carol"));
    }

    [Fact]
    public void Only_an_owner_makes_or_unmakes_an_owner_and_the_last_owner_stays_one()
    {
        var state = WithUsers();
        Assert.Equal(UserRole.Owner, state.Users["usr_alice"].Role);
        Assert.Equal(UserRole.Member, state.Users["usr_bob"].Role);

        Assert.Equal(ApiErrorCodes.Forbidden, Refused(state, new SetUserRole(T, "usr_bob", UserRole.Owner, ByOwner: false)).Code);
        Assert.Equal(ApiErrorCodes.Forbidden, Refused(state, new CreateUser(T, "usr_dave", "dave@example.com", Now) { Role = UserRole.Owner, ByOwner = false }).Code);
        state = Run(state, new SetUserRole(T, "usr_bob", UserRole.Admin, ByOwner: false)); // an admin makes admins
        Assert.Equal(ApiErrorCodes.Forbidden, Refused(state, new SetUserRole(T, "usr_alice", UserRole.Admin, ByOwner: false)).Code);
        Assert.Equal(ApiErrorCodes.Conflict, Refused(state, new SetUserRole(T, "usr_alice", UserRole.Member, ByOwner: true)).Code);

        state = Run(state, new SetUserRole(T, "usr_bob", UserRole.Owner, ByOwner: true));
        state = Run(state, new SetUserRole(T, "usr_alice", UserRole.Member, ByOwner: true)); // bob owns it now
        Assert.Equal((UserRole.Member, UserRole.Owner), (state.Users["usr_alice"].Role, state.Users["usr_bob"].Role));
        Assert.Empty(state.Process(new SetUserRole(T, "usr_bob", UserRole.Owner, ByOwner: true)).Events);
        Assert.Equal(ApiErrorCodes.NotFound, Refused(state, new SetUserRole(T, "usr_nobody", UserRole.Admin, ByOwner: true)).Code);
    }

    [Fact]
    public void Roles_are_the_autogroups_admin_owner_and_auditor_in_rules_and_tag_owners_and_follow_role_changes()
    {
        const string policy = """
            {
              "tagOwners": {"tag:server": ["autogroup:admin"]},
              "acls": [
                {"action": "accept", "src": ["autogroup:admin"], "dst": ["tag:server:22"]},
                {"action": "accept", "src": ["autogroup:auditor"], "dst": ["tag:server:443"]},
              ],
            }
            """;
        var state = Run(WithUsers(), new SetPolicy(T, policy, Now));
        Assert.Equal<string>(["alice@example.com"], state.Policy.Groups["autogroup:admin"]);
        Assert.Equal<string>(["alice@example.com"], state.Policy.Groups["autogroup:owner"]);
        Assert.Equal<string>(["carol@example.com"], state.Policy.Groups["autogroup:auditor"]);
        Assert.True(TagOwnership.Owns(state.Policy.TagOwners, state.Policy.Groups, "alice@example.com", "tag:server"));
        Assert.False(TagOwnership.Owns(state.Policy.TagOwners, state.Policy.Groups, "bob@example.com", "tag:server"));

        state = Run(state, new SetUserRole(T, "usr_bob", UserRole.Admin, ByOwner: false));
        Assert.Equal<string>(["alice@example.com", "bob@example.com"], state.Policy.Groups["autogroup:admin"]);
        Assert.True(TagOwnership.Owns(state.Policy.TagOwners, state.Policy.Groups, "bob@example.com", "tag:server"));
        // A key made for bob may carry the tag now.
        Run(state, new CreateAuthKey(T, "kbob", "hash", "usr_bob", false, false, ["tag:server"], Now.AddDays(1), "", Now));
    }
}
