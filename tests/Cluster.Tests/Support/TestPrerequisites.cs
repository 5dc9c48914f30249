namespace Weft.Cluster.Tests.Support;

/// <summary>
/// Tests that need an outside part (a PostgreSQL server, root) skip with a reason when it is missing.
/// The README's test command provides every part and sets WEFT_REQUIRE_ALL_TESTS=1, which turns a
/// missing part into a failure: in CI nothing is silently skipped.
/// </summary>
public static class TestPrerequisites
{
    public const string PostgresVariable = "WEFT_TEST_POSTGRES";

    public static bool AllRequired => Environment.GetEnvironmentVariable("WEFT_REQUIRE_ALL_TESTS") == "1";

    public static string RequirePostgres()
    {
        var connection = Environment.GetEnvironmentVariable(PostgresVariable);
        if (!string.IsNullOrWhiteSpace(connection)) return connection;
        const string reason = $"no PostgreSQL server: set {PostgresVariable} to an admin connection string (./test.sh starts one)";
        if (AllRequired) throw new InvalidOperationException(reason);
        Skip.If(true, reason);
        return null!;
    }
}
