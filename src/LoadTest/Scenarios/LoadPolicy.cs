using System.Text;
using Weft.Contracts.Control;

namespace Weft.LoadTest.Scenarios;

/// <summary>
/// The policy a run gives its tailnets when it shapes visibility or edits policies: K tags
/// (<c>tag:load-g0</c> …) that each reach only themselves, so a node sees the other nodes of its group
/// and no one else. Each edit gives every group one more rule on a marker port; a device's filter
/// carries the highest marker it was given, which is how the tester sees an edit arrive.
/// </summary>
public static class LoadPolicy
{
    /// <summary>Marker ports: the first edit opens 40001, the next 40002, and so on.</summary>
    public const int FirstMarkerPort = 40_000;
    public const int MarkerPorts = 20_000;

    public static string GroupTag(int group) => $"tag:load-g{group}";

    /// <summary>The policy of edit <paramref name="marker"/> (0: before any edit, no marker rule).</summary>
    public static string Text(int groups, int marker)
    {
        if (marker is < 0 or >= MarkerPorts) throw new ArgumentOutOfRangeException(nameof(marker), $"a marker is 0-{MarkerPorts - 1}");
        var text = new StringBuilder();
        text.AppendLine("// Written by weft-loadtest: each group reaches only itself.");
        text.AppendLine("{");
        text.AppendLine("  \"tagOwners\": {");
        text.AppendLine(string.Join(",\n", Enumerable.Range(0, groups).Select(g => $"    \"{GroupTag(g)}\": []")));
        text.AppendLine("  },");
        text.AppendLine("  \"acls\": [");
        var rules = new List<string>();
        for (var g = 0; g < groups; g++)
        {
            rules.Add($"    {{\"action\": \"accept\", \"src\": [\"{GroupTag(g)}\"], \"dst\": [\"{GroupTag(g)}:*\"]}}");
            if (marker > 0) rules.Add($"    {{\"action\": \"accept\", \"src\": [\"{GroupTag(g)}\"], \"proto\": \"udp\", \"dst\": [\"{GroupTag(g)}:{FirstMarkerPort + marker}\"]}}");
        }
        text.AppendLine(string.Join(",\n", rules));
        text.AppendLine("  ]");
        text.AppendLine("}");
        return text.ToString();
    }

    /// <summary>The group a device's tags put it in (0 for an untagged device: the default policy has one group).</summary>
    public static int GroupOf(IEnumerable<string> tags)
    {
        foreach (var tag in tags)
            if (tag.StartsWith("tag:load-g", StringComparison.Ordinal) && int.TryParse(tag.AsSpan("tag:load-g".Length), out var group)) return group;
        return 0;
    }

    /// <summary>The highest edit marker in a device's filter (0 when it has none).</summary>
    public static int MarkerIn(PacketFilter filter)
    {
        var highest = 0;
        foreach (var rule in filter.Rules)
            foreach (var range in rule.Ports)
                if (range.First == range.Last && range.First > FirstMarkerPort && range.First < FirstMarkerPort + MarkerPorts)
                    highest = Math.Max(highest, (int)range.First - FirstMarkerPort);
        return highest;
    }
}
