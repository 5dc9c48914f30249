namespace Weft.NodeAgent.Control;

/// <summary>
/// When the node key rotates: ahead of its expiry by a lead (by default a quarter of the key's
/// lifetime, at most a day), so that a device that is offline for a while still finds its key valid
/// when it returns and rotates then. Pure: the ControlClient turns the answer into a timer.
/// </summary>
public static class NodeKeyRotation
{
    public static readonly TimeSpan MaxLead = TimeSpan.FromDays(1);

    /// <summary>How long from <paramref name="now"/> until the rotation is due (zero or less: due now).</summary>
    public static TimeSpan DueIn(DateTimeOffset expiry, DateTimeOffset issuedAt, DateTimeOffset now, TimeSpan? lead = null)
    {
        var chosen = lead ?? TimeSpan.FromTicks(Math.Min(MaxLead.Ticks, Math.Max(0, (expiry - issuedAt).Ticks / 4)));
        return expiry - chosen - now;
    }
}
