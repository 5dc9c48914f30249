using FsCheck.Xunit;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

public class ReplayWindowTests
{
    [Fact]
    public void The_window_is_8128_counters()
    {
        Assert.Equal(8128, ReplayWindow.Size);
        Assert.Equal(8128, Constants.ReplayWindowSize);
    }

    [Fact]
    public void Each_counter_is_accepted_once()
    {
        var window = new ReplayWindow();
        Assert.True(window.Accept(0));
        Assert.False(window.Accept(0));
        Assert.True(window.Accept(1));
        Assert.True(window.Accept(5));
        Assert.True(window.Accept(3));
        Assert.False(window.Accept(3));
        Assert.False(window.Accept(5));
    }

    [Fact]
    public void Counters_up_to_the_window_behind_are_accepted_and_older_ones_refused()
    {
        var window = new ReplayWindow();
        Assert.True(window.Accept(10_000));
        Assert.True(window.Accept(10_000 - 8128));
        Assert.False(window.Accept(10_000 - 8129));
        Assert.False(window.Accept(0));
    }

    [Fact]
    public void A_big_jump_forward_clears_the_whole_ring()
    {
        var window = new ReplayWindow();
        for (ulong i = 0; i < 200; i++) Assert.True(window.Accept(i));
        Assert.True(window.Accept(1_000_000));
        Assert.True(window.Accept(1_000_000 - 64));
        Assert.False(window.Accept(150));
    }

    [Fact]
    public void Counters_at_or_beyond_the_reject_limit_are_refused()
    {
        var window = new ReplayWindow();
        Assert.False(window.Accept(Constants.RejectAfterMessages));
        Assert.False(window.Accept(ulong.MaxValue));
        Assert.True(window.Accept(Constants.RejectAfterMessages - 1));
    }

    [Property]
    public bool Matches_a_naive_set_within_the_window(ushort[] offsets)
    {
        var window = new ReplayWindow();
        var seen = new HashSet<ulong>();
        ulong newest = 0;
        var any = false;
        foreach (var offset in offsets ?? [])
        {
            var counter = (ulong)offset * 3;
            var tooOld = any && newest > counter && newest - counter > 8128;
            var expected = !tooOld && !seen.Contains(counter);
            if (window.Accept(counter) != expected) return false;
            if (expected)
            {
                seen.Add(counter);
                if (!any || counter > newest) newest = counter;
                any = true;
            }
        }
        return true;
    }
}
