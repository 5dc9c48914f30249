using System.Diagnostics;

namespace Weft.Cluster.Telemetry;

/// <summary>
/// The coordinator's spans (activity source <c>Weft.Coordinator</c>). An admin API call (ASP.NET Core's
/// server span) carries its trace context to the tailnet entity in the command's envelope
/// (<see cref="Traced"/>); the entity's span covers deciding, storing and acknowledging the command,
/// and a child span covers the netmap fan-out the change causes.
/// </summary>
public static class CoordinatorTracing
{
    public const string SourceName = "Weft.Coordinator";

    public static readonly ActivitySource Source = new(SourceName);

    /// <summary>Ends a span that was started on another message, leaving the thread's current activity as it was.</summary>
    public static void End(Activity? span, string? error = null)
    {
        if (span is null) return;
        var current = Activity.Current;
        if (error is not null) span.SetStatus(ActivityStatusCode.Error, error);
        span.Stop();
        Activity.Current = current;
    }

    /// <summary>Runs <paramref name="action"/> with <paramref name="span"/> as the current activity (for child spans), then restores the previous one.</summary>
    public static void Within(Activity? span, Action action)
    {
        if (span is null)
        {
            action();
            return;
        }
        var previous = Activity.Current;
        Activity.Current = span;
        try
        {
            action();
        }
        finally
        {
            Activity.Current = previous;
        }
    }
}
