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
}
