using Weft.Cluster.Cli;
using Weft.LoadTest.Measurement;
using Weft.LoadTest.Reporting;

namespace Weft.LoadTest.Tests;

/// <summary>
/// The end check's patience with a cluster that cannot say its view yet. A 50,000-node run lost its
/// whole result when, minutes after a kill, one tailnet on a survivor was still recovering and the
/// admin API's answer for it ran out of retries: the exception ended the process before anything was written.
/// </summary>
public sealed class ConvergenceCheckTests
{
    private static readonly TimeSpan Pause = TimeSpan.FromMilliseconds(10);

    [Fact]
    public async Task A_view_that_cannot_be_read_for_a_while_is_asked_for_again()
    {
        var attempts = 0;
        var log = new StringWriter();
        var result = await ConvergenceCheck.UntilConvergedAsync(() =>
        {
            if (++attempts <= 2) throw new AdminApiError(503, "unavailable", "tailnet tn_x is not available yet");
            return Task.FromResult(new ConvergenceResult(5, 5, 0, []));
        }, agents: 5, TimeSpan.FromSeconds(60), Pause, log, CancellationToken.None);

        Assert.Equal((5, 5), (result.AgentsChecked, result.Converged));
        Assert.Empty(result.Differences);
        Assert.Equal(3, attempts);
        Assert.Equal(2, log.ToString().Split('\n').Count(line => line.Contains("tailnet tn_x is not available yet")));
    }

    [Fact]
    public async Task A_view_that_still_cannot_be_read_at_the_deadline_counts_no_agent_as_converged_and_says_why()
    {
        var result = await ConvergenceCheck.UntilConvergedAsync(
            () => throw new HttpRequestException("Connection refused (127.0.0.1:8382)"),
            agents: 7, TimeSpan.FromMilliseconds(100), Pause, TextWriter.Null, CancellationToken.None);

        Assert.Equal(7, result.AgentsChecked);
        Assert.Equal(0, result.Converged);
        Assert.Contains("Connection refused (127.0.0.1:8382)", Assert.Single(result.Differences));
    }

    [Fact]
    public async Task Stores_that_have_not_converged_by_the_deadline_are_reported_as_they_stand()
    {
        var attempts = 0;
        var result = await ConvergenceCheck.UntilConvergedAsync(() =>
        {
            attempts++;
            return Task.FromResult(new ConvergenceResult(4, 3, 0, ["agent 2: holds 48 peers, the cluster lists 49 in its group"]));
        }, agents: 4, TimeSpan.FromMilliseconds(100), Pause, TextWriter.Null, CancellationToken.None);

        Assert.True(attempts > 1, "a store that has not converged yet is checked again until the deadline");
        Assert.Equal(3, result.Converged);
        Assert.Equal(["agent 2: holds 48 peers, the cluster lists 49 in its group"], result.Differences);
    }
}
