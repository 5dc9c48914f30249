namespace Weft.NodeAgent.Tests.Support;

/// <summary>
/// A test whose prerequisite is missing skips with the reason, except under the README's test command
/// (WEFT_REQUIRE_ALL_TESTS=1, as root in CI), where that is a failure: it never passes silently.
/// </summary>
public static class Prerequisite
{
    public static void Missing(string reason)
    {
        if (Environment.GetEnvironmentVariable("WEFT_REQUIRE_ALL_TESTS") == "1")
            throw new InvalidOperationException($"{reason}; WEFT_REQUIRE_ALL_TESTS=1 does not allow skipping");
        Skip.If(true, reason);
    }

    /// <param name="why">What the test does that needs root (binding port 53, say).</param>
    public static void RequireRoot(string why)
    {
        if (Environment.UserName != "root") Missing($"{why}, which needs root");
    }
}
