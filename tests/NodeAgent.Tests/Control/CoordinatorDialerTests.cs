using Weft.NodeAgent.Control;

namespace Weft.NodeAgent.Tests.Control;

/// <summary>Which coordinator an agent dials next, and when.</summary>
public class CoordinatorDialerTests
{
    /// <summary>A reading of the monotonic clock (the dialer never sees wall time).</summary>
    private static readonly TimeSpan T0 = TimeSpan.FromHours(30);
    private static readonly Uri A = new("http://127.0.0.1:7001/");
    private static readonly Uri B = new("http://127.0.0.1:7002/");
    private static readonly Uri C = new("http://127.0.0.1:7003/");
    private static readonly TimeSpan Min = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan Max = TimeSpan.FromSeconds(5);

    private static CoordinatorDialer Dialer(params Uri[] urls) => new(urls, Min, Max, new Random(7));

    [Fact]
    public void When_a_stream_is_lost_another_coordinator_is_dialled_within_a_jitter_and_the_lost_one_is_not_first()
    {
        var dialer = Dialer(A, B, C);
        Assert.Equal(A, dialer.Next(T0).Url);
        dialer.Connected(A);

        dialer.Lost(A, T0);
        var (url, delay) = dialer.Next(T0);

        Assert.NotEqual(A, url);
        Assert.InRange(delay, TimeSpan.Zero, Min);
    }

    [Fact]
    public void A_failing_coordinator_backs_off_exponentially_but_never_beyond_the_cap()
    {
        var dialer = Dialer(A);
        var now = T0;
        var delays = new List<TimeSpan>();
        for (var i = 0; i < 12; i++)
        {
            dialer.Failed(A, now);
            var (_, delay) = dialer.Next(now);
            delays.Add(delay);
        }

        Assert.InRange(delays[0], Min / 2, Min);
        Assert.True(delays[3] > delays[0]);
        Assert.All(delays, d => Assert.InRange(d, TimeSpan.Zero, Max));
        dialer.Connected(A);
        Assert.Equal(TimeSpan.Zero, dialer.Next(now).Delay);
    }

    [Fact]
    public void A_retry_after_from_the_coordinator_is_honoured()
    {
        var dialer = Dialer(A);
        dialer.Failed(A, T0, retryAfter: TimeSpan.FromSeconds(20));

        Assert.True(dialer.Next(T0).Delay >= TimeSpan.FromSeconds(20));
    }

    [Fact]
    public void A_coordinator_going_away_is_left_alone_and_the_others_are_dialled_after_the_pause_it_asked_for()
    {
        var dialer = Dialer(A, B);
        dialer.Connected(A);

        dialer.GoingAway(A, TimeSpan.FromMilliseconds(200), T0);
        var (url, delay) = dialer.Next(T0);

        Assert.Equal(B, url);
        Assert.InRange(delay, TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(200) + Min + TimeSpan.FromMilliseconds(200));
        dialer.Failed(B, T0 + TimeSpan.FromSeconds(1));
        Assert.NotEqual(A, dialer.Next(T0 + TimeSpan.FromSeconds(1)).Url); // A is still going away
    }

    [Fact]
    public void Coordinators_listed_in_a_netmap_join_the_ones_configured()
    {
        var dialer = Dialer(A);
        dialer.Learn(["http://127.0.0.1:7002/", "not a url", "ftp://127.0.0.1/", A.ToString()]);

        Assert.Equal([A, B], dialer.Coordinators);
    }

    [Fact]
    public void Coordinators_a_later_netmap_no_longer_lists_are_dropped_but_the_configured_ones_stay()
    {
        var dialer = Dialer(A);
        dialer.Learn([B.ToString(), C.ToString()]);
        var connected = dialer.Next(T0).Url; // A, the first

        // B is retired: the cluster lists A and C now. A map that lists none changes nothing.
        dialer.Learn([C.ToString()]);
        Assert.Equal([A, C], dialer.Coordinators);
        dialer.Learn([]);
        Assert.Equal([A, C], dialer.Coordinators);

        // A stream to a URL dropped meanwhile still reports its end, and it changes nothing.
        Assert.Equal(A, connected);
        dialer.Connected(B);
        dialer.Failed(B, T0);
        dialer.Lost(B, T0);
        dialer.GoingAway(B, TimeSpan.FromSeconds(1), T0);
        Assert.Equal([A, C], dialer.Coordinators);
        var (first, wait) = dialer.Next(T0);
        Assert.Equal(TimeSpan.Zero, wait);
        dialer.Failed(first, T0);
        Assert.Equal(first == A ? C : A, dialer.Next(T0).Url);
    }

    [Fact]
    public void The_node_key_rotates_a_quarter_of_its_lifetime_before_expiry_and_at_most_a_day_before()
    {
        var issued = new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero);
        Assert.Equal(TimeSpan.FromDays(2), NodeKeyRotation.DueIn(issued.AddDays(3), issued, issued, lead: TimeSpan.FromDays(1)));
        Assert.Equal(TimeSpan.FromHours(6), NodeKeyRotation.DueIn(issued.AddHours(8), issued, issued));
        Assert.Equal(TimeSpan.FromDays(179), NodeKeyRotation.DueIn(issued.AddDays(180), issued, issued));
        Assert.True(NodeKeyRotation.DueIn(issued.AddDays(1), issued, issued.AddDays(1)) <= TimeSpan.Zero);
    }
}
