using Weft.Lab;

namespace Weft.Integration.Tests;

/// <summary>
/// Opens a lab for a test. Without root (or a tool) the test is skipped with the reason; under the
/// README's test command (WEFT_REQUIRE_ALL_TESTS=1, run as root in CI) that is a failure instead.
/// </summary>
public static class LabTest
{
    public static Lab.Lab Open(params string[] tools)
    {
        try
        {
            LabPrerequisites.RequireRoot();
            LabPrerequisites.RequireTools(["ip", .. tools]);
            return Lab.Lab.Create();
        }
        catch (LabUnavailableException e)
        {
            if (Environment.GetEnvironmentVariable("WEFT_REQUIRE_ALL_TESTS") == "1")
                throw new InvalidOperationException($"lab test cannot run here: {e.Message}");
            Skip.If(true, e.Message);
            throw;
        }
    }

    /// <summary>
    /// Runs a scenario; if it fails, the failure carries every lab process's output (the agents' and
    /// the coordinator's logs), also kept in <c>weft-&lt;name&gt;-failure.log</c> in the temp folder.
    /// </summary>
    public static async Task WithLogsOnFailure(Lab.Lab lab, string name, Func<Task> scenario)
    {
        try
        {
            await scenario();
        }
        catch (Exception e) when (e is not SkipException)
        {
            File.WriteAllText(Path.Combine(Path.GetTempPath(), $"weft-{name}-failure.log"), lab.ProcessOutputs());
            throw new Xunit.Sdk.XunitException($"{e.Message}\n--- lab process output ---\n{lab.ProcessOutputs()}\n--- end ---\n{e.StackTrace}");
        }
    }
}
