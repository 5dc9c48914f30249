namespace Weft.LoadTest.Scenarios;

/// <summary>
/// One generator process's part of a run (<c>--shard 2/3</c>): when one process cannot hold every
/// simulated node, several run side by side, each with whole tailnets (every third one, for 2/3), so
/// that a change and every peer it must reach live in the same process and its latency is measured on
/// one clock. <c>weft-loadtest merge</c> combines their results.
/// </summary>
public sealed record Shard(int Number, int Count)
{
    public static readonly Shard Whole = new(1, 1);

    public bool IsWhole => Count == 1;

    /// <summary>"2/3": the second of three (numbered from 1).</summary>
    public static Shard Parse(string text)
    {
        var sides = text.Split('/');
        if (sides.Length != 2 || !int.TryParse(sides[0], out var number) || !int.TryParse(sides[1], out var count))
            throw new ScenarioException($"'{text}' is not a shard: write <number>/<count>, for example 2/3");
        if (count is < 1 or > 1000) throw new ScenarioException($"shard count {count} is outside 1-1000");
        if (number < 1 || number > count) throw new ScenarioException($"shard number {number} is outside 1-{count}");
        return new Shard(number, count);
    }

    /// <summary>Whether the tailnet at this position in the scenario (counting across its groups from 0) is this shard's.</summary>
    public bool Owns(int tailnetIndex) => tailnetIndex % Count == Number - 1;

    public override string ToString() => $"{Number}/{Count}";
}
