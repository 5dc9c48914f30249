using System.Text.Json;
using System.Text.Json.Serialization;

namespace Weft.LoadTest.Scenarios;

/// <summary>So many tailnets of so many devices each; a scenario mixes several groups (1,000 × 50 plus 1 × 5,000).</summary>
public sealed record TailnetGroup(int Count, int Nodes)
{
    public int TotalNodes => Count * Nodes;
}

/// <summary>
/// One stretch of churn after every simulated node has joined. Endpoint changes are what the
/// propagation latency is measured on; key rotations and a reconnect storm are load on top of them.
/// A chaos command (for example <c>deploy/local-cluster kill 2</c>) runs once, at
/// <see cref="ChaosAtSecond"/> into the phase.
/// </summary>
public sealed record ChurnPhase
{
    public string Name { get; init; } = "steady";
    public double Seconds { get; init; } = 30;
    public double EndpointChangesPerSecond { get; init; } = 100;
    public double KeyRotationsPerSecond { get; init; }
    /// <summary>At the start of the phase every agent drops its stream and dials again within <see cref="ReconnectSpreadSeconds"/>.</summary>
    public bool ReconnectStorm { get; init; }
    /// <summary>New nodes joining a random tailnet (and group) per second; they stay until a leave picks them.</summary>
    public double JoinsPerSecond { get; init; }
    /// <summary>Nodes that joined during the churn and are deleted by an admin (the API's device delete) per second.</summary>
    public double LeavesPerSecond { get; init; }
    /// <summary>Ephemeral nodes per second: each joins with an ephemeral key, disconnects once its peers hold it, and the cluster removes it after the tailnet's ephemeral timeout.</summary>
    public double EphemeralPerSecond { get; init; }
    /// <summary>Policy edits per second, each to a random tailnet: every device of that tailnet gets a new packet filter.</summary>
    public double PolicyEditsPerSecond { get; init; }
    public double ReconnectSpreadSeconds { get; init; } = 2;
    public string? ChaosCommand { get; init; }
    /// <summary>Chaos from code (a test killing one of its coordinator processes); runs after <see cref="ChaosCommand"/> if both are set.</summary>
    [JsonIgnore]
    public Func<Task>? ChaosAction { get; init; }
    public double ChaosAtSecond { get; init; }
    /// <summary>
    /// Another shard runs this phase's chaos command: this one only marks the moment, at
    /// <see cref="ChaosAtSecond"/>, and measures how long its own tailnets take to settle after it.
    /// </summary>
    [JsonIgnore]
    public bool ChaosElsewhere { get; init; }

    /// <summary>Whether something happens at <see cref="ChaosAtSecond"/> that the phase measures recovery from.</summary>
    public bool HasChaos => ChaosCommand is not null || ChaosAction is not null || ChaosElsewhere;
}

/// <summary>
/// What a load run does: the tailnets and their sizes, the policy shape, how fast nodes join, and the
/// churn phases. With one policy group every tailnet runs the default policy (everyone reaches
/// everyone), so each change is due at every other device of its tailnet: the visibility V is the
/// tailnet's size less one. With <see cref="PolicyGroups"/> = K the nodes of each tailnet are tagged
/// into K groups and the policy lets each group reach only itself, so V is about size / K less one.
/// </summary>
public sealed record Scenario
{
    public const int MaxNodes = 1_000_000;

    public string Name { get; init; } = "custom";
    public IReadOnlyList<TailnetGroup> Tailnets { get; init; } = [new(10, 20)];
    /// <summary>Registrations outstanding at once: the storm's pressure (the cluster's admission control answers the rest).</summary>
    public int JoinsInFlight { get; init; } = 256;
    /// <summary>HTTP/2 streams per connection to a coordinator (Kestrel allows 100 by default).</summary>
    public int StreamsPerConnection { get; init; } = 90;
    /// <summary>Tagged groups per tailnet that reach only themselves (1: the default policy, everyone reaches everyone).</summary>
    public int PolicyGroups { get; init; } = 1;
    /// <summary>Agents that hold more peers than this keep thin peer records (<see cref="Fleet.ThinPeers"/>); 0: every agent is thin.</summary>
    public int ThinAbovePeers { get; init; } = 500;
    /// <summary>Among the agents that would be thin, every Nth keeps full records: a sample of full stores in the big tailnets.</summary>
    public int FullSampleEvery { get; init; } = 20;
    /// <summary>The tailnets' ephemeral timeout: how long after an ephemeral node disconnects the cluster removes it.</summary>
    public int EphemeralTimeoutSeconds { get; init; } = 2;
    public IReadOnlyList<ChurnPhase> Phases { get; init; } = [new()];

    public int TotalNodes => Tailnets.Sum(g => g.TotalNodes);

    /// <summary>
    /// This shard's part: its tailnets (every Count-th, from position Number-1), and the scenario's rates
    /// in proportion (changes and rotations by its share of nodes; joins, leaves, ephemeral nodes and
    /// policy edits, which pick a tailnet, by its share of tailnets), so that the shards together drive
    /// the whole scenario. Only the first shard runs a chaos command; the others mark its moment.
    /// </summary>
    public Scenario ForShard(Shard shard)
    {
        if (shard.IsWhole) return this;
        var sizes = Tailnets.SelectMany(g => Enumerable.Repeat(g.Nodes, g.Count)).Where((_, index) => shard.Owns(index)).ToList();
        if (sizes.Count == 0) throw new ScenarioException($"shard {shard} has no tailnets: the scenario has only {TotalTailnets}");
        var groups = new List<TailnetGroup>();
        foreach (var size in sizes)
        {
            if (groups.Count > 0 && groups[^1].Nodes == size) groups[^1] = groups[^1] with { Count = groups[^1].Count + 1 };
            else groups.Add(new TailnetGroup(1, size));
        }
        var nodeShare = (double)sizes.Sum() / TotalNodes;
        var tailnetShare = (double)sizes.Count / TotalTailnets;
        return this with
        {
            Name = $"{Name} (shard {shard})",
            Tailnets = groups,
            JoinsInFlight = Math.Max(1, (int)Math.Ceiling(JoinsInFlight * nodeShare)),
            Phases = [.. Phases.Select(p => p with
            {
                EndpointChangesPerSecond = p.EndpointChangesPerSecond * nodeShare,
                KeyRotationsPerSecond = p.KeyRotationsPerSecond * nodeShare,
                JoinsPerSecond = p.JoinsPerSecond * tailnetShare,
                LeavesPerSecond = p.LeavesPerSecond * tailnetShare,
                EphemeralPerSecond = p.EphemeralPerSecond * tailnetShare,
                PolicyEditsPerSecond = p.PolicyEditsPerSecond * tailnetShare,
                ChaosCommand = shard.Number == 1 ? p.ChaosCommand : null,
                ChaosElsewhere = shard.Number != 1 && p.ChaosCommand is not null,
            })],
        };
    }

    public int TotalTailnets => Tailnets.Sum(g => g.Count);

    /// <summary>The tailnets get a policy of their own (tags, one rule per group) rather than the default one.</summary>
    public bool TaggedPolicy => PolicyGroups > 1 || Phases.Any(p => p.PolicyEditsPerSecond > 0);

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        MaxDepth = 16,
    };

    /// <summary>Reads a scenario file (JSON; comments allowed). Unknown fields and impossible values are refused by name.</summary>
    public static Scenario Parse(string json)
    {
        Scenario? scenario;
        try
        {
            scenario = JsonSerializer.Deserialize<Scenario>(json, Json);
        }
        catch (JsonException e)
        {
            throw new ScenarioException($"the scenario is not valid JSON for a scenario: {e.Message}");
        }
        return (scenario ?? throw new ScenarioException("the scenario is empty")).Validated();
    }

    /// <summary>"1000x50,1x5000": groups of tailnets, each <c>count x nodes</c>.</summary>
    public static IReadOnlyList<TailnetGroup> ParseMix(string mix)
    {
        var groups = new List<TailnetGroup>();
        foreach (var part in mix.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var sides = part.Split('x', 'X');
            if (sides.Length != 2 || !int.TryParse(sides[0], out var count) || !int.TryParse(sides[1], out var nodes))
                throw new ScenarioException($"'{part}' is not <tailnets>x<nodes>, for example 1000x50");
            groups.Add(new TailnetGroup(count, nodes));
        }
        return groups;
    }

    public Scenario Validated()
    {
        if (Tailnets.Count == 0) throw new ScenarioException("the scenario has no tailnets");
        foreach (var group in Tailnets)
        {
            if (group.Count < 1) throw new ScenarioException($"a tailnet group has count {group.Count}; it must be at least 1");
            if (group.Nodes < 2) throw new ScenarioException($"a tailnet group has {group.Nodes} nodes; a tailnet needs at least 2 for anything to propagate");
        }
        if ((long)Tailnets.Sum(g => (long)g.TotalNodes) > MaxNodes) throw new ScenarioException($"more than {MaxNodes} nodes in one run");
        if (JoinsInFlight is < 1 or > 100_000) throw new ScenarioException($"joinsInFlight {JoinsInFlight} is outside 1-100000");
        if (StreamsPerConnection is < 1 or > 10_000) throw new ScenarioException($"streamsPerConnection {StreamsPerConnection} is outside 1-10000");
        if (PolicyGroups is < 1 or > 1000) throw new ScenarioException($"policyGroups {PolicyGroups} is outside 1-1000");
        if (Tailnets.FirstOrDefault(g => g.Nodes < 2 * PolicyGroups) is { } small)
            throw new ScenarioException($"policyGroups {PolicyGroups} leaves fewer than 2 nodes per group in tailnets of {small.Nodes}");
        if (ThinAbovePeers < 0) throw new ScenarioException($"thinAbovePeers {ThinAbovePeers} is negative");
        if (FullSampleEvery is < 1 or > 1_000_000) throw new ScenarioException($"fullSampleEvery {FullSampleEvery} is outside 1-1000000");
        if (EphemeralTimeoutSeconds is < 1 or > 3600) throw new ScenarioException($"ephemeralTimeoutSeconds {EphemeralTimeoutSeconds} is outside 1-3600");
        foreach (var phase in Phases)
        {
            if (string.IsNullOrWhiteSpace(phase.Name)) throw new ScenarioException("a phase has no name");
            if (phase.Seconds is <= 0 or > 86_400) throw new ScenarioException($"phase '{phase.Name}': seconds {phase.Seconds} is outside (0, 86400]");
            if (phase.EndpointChangesPerSecond is < 0 or > 1_000_000) throw new ScenarioException($"phase '{phase.Name}': endpointChangesPerSecond is outside 0-1000000");
            if (phase.KeyRotationsPerSecond is < 0 or > 100_000) throw new ScenarioException($"phase '{phase.Name}': keyRotationsPerSecond is outside 0-100000");
            if (phase.ChaosAtSecond < 0 || phase.ChaosAtSecond > phase.Seconds) throw new ScenarioException($"phase '{phase.Name}': chaosAtSecond must fall inside the phase");
            foreach (var (name, rate) in new[] { ("joinsPerSecond", phase.JoinsPerSecond), ("leavesPerSecond", phase.LeavesPerSecond), ("ephemeralPerSecond", phase.EphemeralPerSecond), ("policyEditsPerSecond", phase.PolicyEditsPerSecond) })
                if (rate is < 0 or > 10_000 || double.IsNaN(rate)) throw new ScenarioException($"phase '{phase.Name}': {name} is outside 0-10000");
            if (phase.ReconnectSpreadSeconds is < 0 or > 600) throw new ScenarioException($"phase '{phase.Name}': reconnectSpreadSeconds is outside 0-600");
        }
        return this;
    }
}

public sealed class ScenarioException(string message) : Exception(message);
