using Weft.Lab;

namespace Weft.Integration.Tests;

/// <summary>
/// The lab's own clean-up. A lab that is not removed keeps its namespaces and its host addresses, and
/// every later lab that takes the same addresses is cut off (a clean clone lost three tests that way).
/// </summary>
public sealed class LabDisposalTests
{
    [SkippableFact]
    public async Task A_process_a_test_had_to_kill_is_left_alone_by_the_labs_disposal_and_the_namespaces_go()
    {
        var lab = LabTest.Open("sh");
        var machine = lab.Id + "m";
        try
        {
            var ns = lab.AddNamespace("m");
            machine = ns.Name;
            // Ignores SIGTERM, as a coordinator busy shutting down can for longer than a test's grace.
            var stubborn = ns.Start("a process that ignores SIGTERM", "sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; done");
            stubborn.WaitForOutput("ready", TimeSpan.FromSeconds(10));

            stubborn.Stop(TimeSpan.FromMilliseconds(300)); // the grace runs out: killed and released
            Assert.True(stubborn.HasExited);
            stubborn.Stop(TimeSpan.FromSeconds(1)); // again, as the lab's disposal does: nothing to do
        }
        finally
        {
            await lab.DisposeAsync(); // the step under test, and the clean-up if a step above failed
        }
        Assert.DoesNotContain(machine, Lab.Lab.Run("ip", "netns", "list"));
        Assert.False(Directory.Exists(lab.Directory));
    }
}
