using System.Collections.Immutable;
using System.Text.RegularExpressions;

namespace Weft.Cluster.Policy;

/// <summary>The spelling rules for names a policy shares with the rest of Weft (auth keys, device tags).</summary>
public static partial class PolicyNames
{
    /// <summary>
    /// Tailscale's tag syntax (<c>CheckTag</c> in tailcfg): <c>tag:</c>, then a letter, then letters,
    /// digits and '-'. Tailscale reads tags in lowercase whatever their case; Weft asks for them in
    /// lowercase, so that a tag is spelt one way everywhere (at most 63 characters after the prefix).
    /// </summary>
    [GeneratedRegex("^tag:[a-z][a-z0-9-]{0,62}$", RegexOptions.CultureInvariant)]
    private static partial Regex TagPattern();

    public static bool IsTag(string text) => TagPattern().IsMatch(text);

    public const string TagRule = "tags are written tag:<name>, where the name starts with a letter and has lowercase letters, digits and '-' (at most 63)";
}

public static class TagOwnership
{
    /// <summary>
    /// Does <paramref name="user"/> own <paramref name="tag"/>: listed in its tagOwners entry by name,
    /// through a group or a role's autogroup (<c>autogroup:admin</c>, <c>autogroup:owner</c>), or as
    /// <c>autogroup:member</c> (every user)? An empty entry is for admins only.
    /// </summary>
    public static bool Owns(IReadOnlyDictionary<string, ImmutableArray<string>> tagOwners, IReadOnlyDictionary<string, ImmutableArray<string>> groups,
        string user, string tag) =>
        tagOwners.TryGetValue(tag, out var owners) && owners.Any(owner =>
            string.Equals(owner, user, StringComparison.OrdinalIgnoreCase)
            || owner == "autogroup:member"
            || (owner.StartsWith("group:", StringComparison.Ordinal) || owner.StartsWith("autogroup:", StringComparison.Ordinal))
                && groups.TryGetValue(owner, out var members) && members.Contains(user, StringComparer.OrdinalIgnoreCase));
}
