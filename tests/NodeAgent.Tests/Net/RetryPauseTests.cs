using Weft.NodeAgent.Net;

namespace Weft.NodeAgent.Tests.Net;

public class RetryPauseTests
{
    [Fact]
    public void A_doubling_pause_grows_with_the_failures_up_to_its_longest()
    {
        var first = TimeSpan.FromMilliseconds(250);
        var longest = TimeSpan.FromSeconds(10);
        Assert.Equal([250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000],
            Enumerable.Range(0, 8).Select(failures => RetryPause.Doubling(first, longest, failures).TotalMilliseconds));
        Assert.Equal(longest, RetryPause.Doubling(first, longest, int.MaxValue));
    }

    [Fact]
    public void Clients_that_fail_together_come_back_spread_over_the_second_half_of_their_pause_not_in_lockstep()
    {
        // A relay that restarts drops every client at once: with equal failure counts, equal pauses brought them all
        // back in the same instant, and the coordinator's access checks refused the burst.
        var pause = TimeSpan.FromSeconds(2);
        var random = new Random(7);
        var pauses = Enumerable.Range(0, 1000).Select(_ => RetryPause.Spread(pause, random)).ToList();
        Assert.All(pauses, p => Assert.InRange(p, pause / 2, pause));
        Assert.True(pauses.Distinct().Count() > 900, "the pauses should differ");
        Assert.True(pauses.Count(p => p < pause * 0.75) is > 350 and < 650, "the pauses should cover the range evenly");
    }
}
