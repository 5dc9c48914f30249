namespace Weft.ClusterLab;

/// <summary>
/// Polls until an asynchronous check holds, with a generous deadline. On failure it reports what
/// the last check saw; it asserts an outcome, never a speed.
/// </summary>
public static class Eventually
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(45);

    /// <summary>Waits until <paramref name="probe"/> returns a value <paramref name="holds"/> accepts, and returns it.</summary>
    public static async Task<T> Until<T>(Func<Task<T>> probe, Func<T, bool> holds, string what, TimeSpan? deadline = null)
    {
        var until = DateTime.UtcNow + (deadline ?? Deadline);
        T last;
        while (true)
        {
            last = await probe();
            if (holds(last)) return last;
            if (DateTime.UtcNow > until) break;
            await Task.Delay(200);
        }
        throw new TimeoutException($"never reached: {what}; last seen: {Describe(last)}");
    }

    public static Task Until(Func<bool> condition, string what, TimeSpan? deadline = null) =>
        Until(() => Task.FromResult(condition()), held => held, what, deadline);

    private static string Describe<T>(T value) => value switch
    {
        null => "null",
        System.Collections.IEnumerable items and not string => string.Join(", ", items.Cast<object>()),
        _ => value.ToString() ?? "",
    };
}
