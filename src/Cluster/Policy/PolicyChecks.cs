using System.Collections.Immutable;
using System.Net;
using Weft.Contracts.Control;

namespace Weft.Cluster.Policy;

/// <summary>The answer to "may this source reach this destination?", with the rule that allows it.</summary>
public sealed record AccessDecision(bool Allowed, int? RuleIndex, string Explanation);

/// <summary>
/// Answers policy questions the way a policy's <c>tests</c> ask them: from one user, group, tag, host
/// or IP to one destination and port. Users, groups and tags are matched by identity; an IP or host
/// also counts as the device that has that address, if there is one.
/// </summary>
public static class PolicyChecks
{
    private const int DefaultTestProtocol = IpProtocols.Tcp;

    /// <summary>
    /// How many rule entries one policy's tests (or one access check) may examine: a few hundred
    /// milliseconds of the tailnet's time. A group of thousands tested against thousands of rules
    /// would otherwise hold the tailnet for minutes; past this the policy is refused instead.
    /// </summary>
    public const long MaxEvaluations = 5_000_000;

    /// <summary>Runs every test of the policy; each failure is an issue at the test's location.</summary>
    public static ImmutableArray<PolicyIssue> RunTests(TailnetPolicy policy, IReadOnlyCollection<PolicyDevice> devices)
    {
        var issues = new List<PolicyIssue>();
        var budget = new Budget();
        PolicyTest? current = null;
        try
        {
            foreach (var test in policy.Tests)
            {
                current = test;
                var path = $"tests[{test.Index}]";
                foreach (var (destination, accept) in test.Accept.Select(d => (d, true)).Concat(test.Deny.Select(d => (d, false))))
                {
                    try
                    {
                        // Accepted: for every member of a group. Denied: for every member too, so one member let through fails it.
                        var decision = Check(policy, test.Source, destination, test.Protocol, devices, budget, everyMember: accept);
                        if (decision.Allowed != accept)
                            issues.Add(new PolicyIssue(test.Line, test.Column, path,
                                $"expected {test.Source} → {destination} to be {(accept ? "accepted" : "denied")}, but {decision.Explanation}"));
                    }
                    catch (ArgumentException unanswerable)
                    {
                        issues.Add(new PolicyIssue(test.Line, test.Column, path, $"{test.Source} → {destination} cannot be tested: {unanswerable.Message}"));
                    }
                }
            }
        }
        catch (BudgetExceeded exceeded)
        {
            issues.Add(new PolicyIssue(current!.Line, current.Column, $"tests[{current.Index}]", exceeded.Message));
        }
        return [.. issues];
    }

    /// <summary>Counts rule entries examined, and stops the work when there have been too many.</summary>
    public sealed class Budget
    {
        private long _left = MaxEvaluations;

        public void Spend(long count)
        {
            _left -= count;
            if (_left < 0)
                throw new BudgetExceeded($"the policy's tests need more than {MaxEvaluations:N0} rule evaluations, the most one policy may take; " +
                    "test fewer or smaller groups, or fewer destinations per test");
        }
    }

    public sealed class BudgetExceeded(string message) : Exception(message);

    /// <summary>
    /// May <paramref name="source"/> reach <paramref name="destination"/> (<c>target:port</c>) over
    /// <paramref name="protocol"/> (default tcp)? A group is allowed only if every member is; with
    /// <paramref name="everyMember"/> false, it is allowed if any member is (what a deny test must rule out).
    /// </summary>
    public static AccessDecision Check(TailnetPolicy policy, string source, string destination, string? protocol, IReadOnlyCollection<PolicyDevice> devices,
        Budget? budget = null, bool everyMember = true)
    {
        budget ??= new Budget();
        var protocols = protocol is null ? [DefaultTestProtocol]
            : IpProtocols.ByName.TryGetValue(protocol, out var named) ? named
            : int.TryParse(protocol, out var number) && number is >= 1 and <= 255 ? [number]
            : throw new ArgumentException($"unknown proto \"{protocol}\"");
        var colon = destination.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(destination[(colon + 1)..], out var port) || port is < 0 or > 65535)
            throw new ArgumentException($"\"{destination}\" is not target:port");
        var target = destination[..colon].Trim('[', ']');

        var sources = Principals(policy, source, devices);
        var targets = Principals(policy, target, devices);
        if (sources.Count == 0) throw new ArgumentException(NamesNobody(policy, source));
        if (targets.Count == 0) throw new ArgumentException(NamesNobody(policy, target));

        AccessDecision? last = null;
        foreach (var from in sources)
        {
            foreach (var to in targets)
            {
                budget.Spend(policy.Rules.Length);
                last = Decide(policy, from, to, port, protocols);
                var member = sources.Count > 1 ? $" (for {from.User})" : "";
                if (everyMember && !last.Allowed) return last with { Explanation = $"no rule allows it{member}" };
                if (!everyMember && last.Allowed) return last with { Explanation = last.Explanation + member };
            }
        }
        return last!;
    }

    private static string NamesNobody(TailnetPolicy policy, string text) => policy.Groups.ContainsKey(text)
        ? $"{text} has no members, so there is no one to check (test one of its users, or give it members first)"
        : $"\"{text}\" names no user, group, tag, host or IP";

    private static AccessDecision Decide(TailnetPolicy policy, Principal from, Principal to, int port, int[] protocols)
    {
        foreach (var rule in policy.Rules)
        {
            if (!protocols.Any(p => rule.EffectiveProtocols.Contains(p))) continue;
            if (!rule.Sources.Any(s => s.Matches(from))) continue;
            foreach (var entry in rule.Destinations)
            {
                if (!entry.AllowsPort(port)) continue;
                var matches = entry.Target is SelfAlias
                    ? from.User is not null && to.User is not null && string.Equals(from.User, to.User, StringComparison.OrdinalIgnoreCase)
                    : entry.Matches(to);
                if (matches) return new AccessDecision(true, rule.Index, $"{rule.Origin} allows it");
            }
        }
        return new AccessDecision(false, null, "no rule allows it");
    }

    private static List<Principal> Principals(TailnetPolicy policy, string text, IReadOnlyCollection<PolicyDevice> devices)
    {
        // Groups, and the roles' autogroups (autogroup:admin…), which the policy holds as groups of their users.
        if (text.StartsWith("group:", StringComparison.Ordinal) || PolicyParser.RoleAutogroups.Contains(text))
            return policy.Groups.TryGetValue(text, out var users) ? [.. users.Select(u => new Principal(u, [], []))] : [];
        if (text.StartsWith("tag:", StringComparison.Ordinal)) return [new Principal(null, [text], [])];
        if (text.Contains('@')) return [new Principal(text, [], [])];
        IPNetwork prefix;
        if (policy.Hosts.TryGetValue(text, out var host)) prefix = host;
        else if (!IpLiteral.TryParsePrefix(text, out prefix, allowBareAddress: true)) return [];
        // A single address that belongs to a device is that device, with its identity.
        var device = prefix.PrefixLength is 32 or 128
            ? devices.FirstOrDefault(d => IPAddress.Parse(d.Ipv4).Equals(prefix.BaseAddress) || IPAddress.Parse(d.Ipv6).Equals(prefix.BaseAddress))
            : null;
        return [device?.Principal ?? new Principal(null, [], [prefix])];
    }
}
