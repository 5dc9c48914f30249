using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

/// <summary>The machine's time asleep, read from Linux's two monotonic clocks (the one that counts a suspend and the one that does not).</summary>
public sealed class SuspendClocksTests
{
    [Fact]
    public async Task The_time_asleep_is_read_from_the_kernel_and_does_not_grow_while_the_machine_is_awake()
    {
        Assert.True(SuspendClocks.TryRead(out var boot, out var monotonic), "CLOCK_BOOTTIME and CLOCK_MONOTONIC could not be read");
        Assert.True(boot >= monotonic, $"the boot-time clock ({boot} ms) is behind the monotonic one ({monotonic} ms)");
        Assert.True(monotonic > 0);

        var before = EngineClock.System.SleptMs;
        await Task.Delay(300);
        // Awake, both clocks advance together (a step of the wall clock moves neither).
        Assert.InRange(EngineClock.System.SleptMs - before, 0, 20);
    }
}
