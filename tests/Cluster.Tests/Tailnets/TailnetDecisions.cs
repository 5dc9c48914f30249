using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>Runs a tailnet command through the pure state: accepted (its events applied) or refused (no event, a rejection).</summary>
public static class TailnetDecisions
{
    public static TailnetState Run(TailnetState state, ITailnetCommand command)
    {
        var decision = state.Process(command);
        Assert.Null(decision.Rejection);
        return decision.Events.Aggregate(state, (s, e) => s.Apply(e));
    }

    public static Rejection Refused(TailnetState state, ITailnetCommand command)
    {
        var decision = state.Process(command);
        Assert.Empty(decision.Events);
        return Assert.IsType<Rejection>(decision.Rejection);
    }
}
