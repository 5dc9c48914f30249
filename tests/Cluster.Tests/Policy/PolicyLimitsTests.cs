using Weft.Cluster.Policy;

namespace Weft.Cluster.Tests.Policy;

/// <summary>What one policy may cost to compile is bounded before the tailnet compiles it.</summary>
public class PolicyLimitsTests
{
    private static string PolicyWith(int rules, int users)
    {
        var members = string.Join(", ", Enumerable.Range(0, users).Select(i => $"\"u{i}@example.com\""));
        var acls = string.Join(",\n", Enumerable.Range(0, rules).Select(i => $"{{ \"action\": \"accept\", \"src\": [\"group:many\"], \"dst\": [\"*:{1 + i}\"] }}"));
        return $"{{ \"groups\": {{ \"group:many\": [{members}] }}, \"acls\": [{acls}] }}";
    }

    [Fact]
    public void Rules_that_expand_past_the_entry_limit_are_refused_with_their_count_and_a_smaller_policy_passes()
    {
        // A 1,000-member group used by 101 rules: 101,101 entries (101 × 1,000 sources + 101 destinations).
        var refused = PolicyParser.Parse(PolicyWith(rules: 101, users: 1000));
        Assert.Null(refused.Policy);
        var issue = Assert.Single(refused.Issues);
        Assert.Equal("acls", issue.Path);
        Assert.Contains("expand to 101101 entries", issue.Message);
        Assert.Contains($"the limit is {PolicyParser.MaxRuleEntries}", issue.Message);

        var accepted = PolicyParser.Parse(PolicyWith(rules: 99, users: 1000));
        Assert.True(accepted.IsValid, string.Join("; ", accepted.Issues));
    }
}
