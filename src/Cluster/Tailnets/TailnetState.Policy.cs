using System.Collections.Immutable;
using Weft.Cluster.Persistence;
using Weft.Cluster.Policy;

namespace Weft.Cluster.Tailnets;

// The tailnet's access policy: its text and version are stored; the parsed form is derived.
public sealed partial record TailnetState
{
    private static readonly PolicyParseResult DefaultPolicy = PolicyParser.Parse(TailnetPolicy.DefaultText) is { Policy: not null } parsed ? parsed
        : throw new InvalidOperationException("the default policy does not parse");

    /// <summary>The policy as written; null while the tailnet has the default.</summary>
    public string? PolicyText { get; init; }

    public int PolicyVersion { get; init; } = 1;

    public DateTimeOffset? PolicyUpdatedAt { get; init; }

    private PolicyParseResult? _policy;

    /// <summary>Nothing reaches anything: what a stored policy means if it no longer parses.</summary>
    private static readonly TailnetPolicy ClosedPolicy = PolicyParser.Parse("""{ "acls": [] }""").Policy
        ?? throw new InvalidOperationException("the closed policy does not parse");

    /// <summary>
    /// The parsed policy in force (parsed once per state that changed it). A stored policy was valid when
    /// it was set, but what it names from the tailnet's users (provider groups, role autogroups) changes;
    /// should it ever stop parsing, the tailnet fails closed rather than fall back to the default (which
    /// allows everything).
    /// </summary>
    public TailnetPolicy Policy => ParsedPolicy.Policy ?? ClosedPolicy;

    private PolicyParseResult ParsedPolicy => _policy ??= PolicyText is null ? DefaultPolicy : PolicyParser.Parse(PolicyText, ProviderGroups(), RoleMembers(), stored: true);

    /// <summary>The users in each role's autogroup: autogroup:owner, autogroup:admin (owners and admins), autogroup:auditor.</summary>
    public IReadOnlyDictionary<string, ImmutableArray<string>> RoleMembers()
    {
        ImmutableArray<string> NamesOf(params UserRole[] roles) => [.. Users.Values.Where(u => roles.Contains(u.Role)).Select(u => u.Name).Order(StringComparer.OrdinalIgnoreCase)];
        return new Dictionary<string, ImmutableArray<string>>
        {
            ["autogroup:owner"] = NamesOf(UserRole.Owner),
            ["autogroup:admin"] = NamesOf(UserRole.Owner, UserRole.Admin),
            ["autogroup:auditor"] = NamesOf(UserRole.Auditor),
        };
    }

    /// <summary>
    /// The identity provider's groups as the policy sees them (<c>group:NAME</c> → its members' emails),
    /// while the tailnet has a provider or users from one; null otherwise.
    /// </summary>
    public IReadOnlyDictionary<string, ImmutableArray<string>>? ProviderGroups()
    {
        if (Sso is null && !Users.Values.Any(u => u.FromProvider)) return null;
        return Users.Values.Where(u => u.FromProvider)
            .SelectMany(u => u.Groups.Select(g => (Group: "group:" + g, u.Name)))
            .GroupBy(m => m.Group, StringComparer.Ordinal)
            .ToImmutableSortedDictionary(g => g.Key, g => g.Select(m => m.Name).Order(StringComparer.OrdinalIgnoreCase).ToImmutableArray(), StringComparer.Ordinal);
    }

    /// <summary>The active devices as the policy sees them (owner name, tags, addresses).</summary>
    public IReadOnlyList<PolicyDevice> PolicyDevices() => [.. Devices.Values.Where(d => d.IsActive).Select(PolicyDeviceOf)];

    public PolicyDevice PolicyDeviceOf(DeviceEntry device) =>
        new(device.DeviceId, device.UserId is { } id && Users.TryGetValue(id, out var user) ? user.Name : null, device.Tags, device.Ipv4, device.Ipv6,
            DeviceRoutes.Prefixes(device.SubnetRoutes), device.IsExitNode);

    /// <summary>What the stored policy holds that this version reads past (sections a later version accepted), for the log.</summary>
    public ImmutableArray<PolicyIssue> StoredPolicyWarnings() => ParsedPolicy.Warnings;

    public PolicyInfo PolicyInfo() => new(PolicyText ?? TailnetPolicy.DefaultText, PolicyVersion, PolicyUpdatedAt ?? CreatedAt);

    /// <summary>Parses a candidate policy and runs its tests against this tailnet's devices.</summary>
    public PolicyValidation Validate(string text) => Validate(text, out _);

    private PolicyValidation Validate(string text, out TailnetPolicy? policy)
    {
        // The text in force, sent again (read, then set): read as stored, so sections a later version accepted do not refuse it.
        var parsed = PolicyParser.Parse(text, ProviderGroups(), RoleMembers(), stored: text == PolicyText);
        policy = parsed.Policy;
        if (parsed.Policy is null) return new PolicyValidation(parsed.Issues, 0, 0);
        var failures = PolicyChecks.RunTests(parsed.Policy, PolicyDevices());
        return new PolicyValidation(failures, parsed.Policy.Rules.Length, parsed.Policy.Tests.Length);
    }

    /// <summary>
    /// A new policy, and the routes its autoApprovers cover that devices advertise and wait for: approved with it,
    /// as when they are advertised (Headscale does the same), rather than left for an admin or a re-advertisement.
    /// </summary>
    private Decision<ITailnetEvent> SetPolicyDecision(SetPolicy command)
    {
        var validation = Validate(command.Text, out var policy);
        if (validation.Issues.Count > 0)
            return Decision<ITailnetEvent>.Reject(new Rejection(Contracts.Admin.ApiErrorCodes.PolicyInvalid,
                $"the policy was refused ({validation.Issues.Count} problem(s)); the old one stays in force: {string.Join("; ", validation.Issues.Take(10))}"));
        if (command.Text == (PolicyText ?? TailnetPolicy.DefaultText)) return Decision<ITailnetEvent>.Unchanged;
        var events = new List<ITailnetEvent> { new PolicyChanged(command.Text, PolicyVersion + 1, command.At) };
        foreach (var device in Devices.Values.Where(d => d.IsActive && !d.AdvertisedRoutes.IsEmpty))
            if (AutoApproved(device, device.AdvertisedRoutes, policy!.AutoApprovers, PolicyDeviceOf(device).Principal) is { } approved)
                events.Add(approved);
        return Decision<ITailnetEvent>.Accept(events);
    }

    private TailnetState ApplyPolicy(PolicyChanged changed) =>
        this with { PolicyText = changed.Text, PolicyVersion = changed.Version, PolicyUpdatedAt = changed.At, _policy = null };

    /// <summary>An <see cref="AccessAnswer"/>, or a <see cref="Rejection"/> when the question itself is malformed.</summary>
    public object CheckAccess(CheckAccess check)
    {
        try
        {
            var decision = PolicyChecks.Check(Policy, check.Source, check.Destination, check.Protocol, PolicyDevices());
            return new AccessAnswer(decision.Allowed, decision.RuleIndex, decision.Explanation);
        }
        catch (Exception e) when (e is ArgumentException or PolicyChecks.BudgetExceeded)
        {
            return Rejection.Invalid(e.Message);
        }
    }
}

public static class TailnetPolicyFollowing
{
    /// <summary>
    /// Events after which the policy is compiled again: the policy itself, or what its names stand for. Roles
    /// are autogroups; who is in a provider's group changes with sign-ins (rare), and whether a policy may name
    /// such groups with the provider.
    /// </summary>
    public static bool RecompilesPolicy(ITailnetEvent @event) =>
        @event is PolicyChanged or UserSignedIn or SsoConfigured or SsoRemoved or UserRoleChanged or UserCreated or UserDeleted;

    /// <summary>Takes one stored tailnet event into the compiled policy: who now sees whom, and whose filter changed.</summary>
    public static PolicyChange Follow(this PolicyEngine engine, ITailnetEvent @event, TailnetState next)
    {
        return @event switch
        {
            // A sign-in may also bring the user's new email from the provider: their devices are theirs under that name now.
            UserSignedIn e => next.Devices.Values.Where(d => d.UserId == e.User.UserId)
                .Aggregate(engine.ChangePolicy(next.Policy), (change, device) => change.Then(Place(device.DeviceId))),
            _ when RecompilesPolicy(@event) => engine.ChangePolicy(next.Policy),
            DeviceRegistered e => Place(e.Device.DeviceId),
            DeviceApproved e => Place(e.DeviceId),
            DeviceReauthorized e => Place(e.DeviceId),
            DeviceTagsChanged e => Place(e.DeviceId),
            DeviceRoutesAdvertised e => Place(e.DeviceId),
            DeviceRoutesApproved e => Place(e.DeviceId),
            DeviceExpired e => engine.Remove(e.DeviceId),
            DeviceDeleted e => engine.Remove(e.DeviceId),
            _ => PolicyChange.None,
        };

        PolicyChange Place(string deviceId) =>
            next.Devices.TryGetValue(deviceId, out var device) && device.IsActive
                ? engine.Upsert(next.PolicyDeviceOf(device))
                : engine.Remove(deviceId);
    }
}
