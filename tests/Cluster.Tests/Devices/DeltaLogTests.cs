using Google.Protobuf;
using Weft.Cluster.Devices;
using Weft.Contracts.Control;

namespace Weft.Cluster.Tests.Devices;

/// <summary>A device stream's resumption log: what a reconnecting agent gets, within its bounds.</summary>
public sealed class DeltaLogTests
{
    private static byte[] Delta(string peer, int size = 0) =>
        new NetMapDelta { Patches = { new PeerPatch { Id = peer, Endpoints = new EndpointList { Endpoints = { new string('x', size) } } } } }.ToByteArray();

    private static List<(ulong Base, ulong Version, string Peer)> Replay(DeltaLog log, ulong from) =>
        log.After(from).Select(entry =>
        {
            var message = ServerMessage.Parser.ParseFrom(entry.Message);
            Assert.Equal(entry.Version, message.Delta.Version);
            return (message.Delta.BaseVersion, message.Delta.Version, message.Delta.Patches.Single().Id);
        }).ToList();

    [Fact]
    public void A_stream_resumes_from_any_kept_version_with_every_later_delta_numbered_as_first_sent()
    {
        var log = new DeltaLog(maxEntries: 8, maxBytes: 64 * 1024);
        for (ulong v = 1; v <= 5; v++) log.Add(v - 1, v, Delta($"dv_{v}"));

        Assert.True(log.CanResumeFrom(2));
        Assert.Equal([(2UL, 3UL, "dv_3"), (3UL, 4UL, "dv_4"), (4UL, 5UL, "dv_5")], Replay(log, 2));
        Assert.Equal(5, Replay(log, 0).Count);
        // Up to date, or a version the log never had: nothing to replay (the device answers otherwise).
        Assert.False(log.CanResumeFrom(5));
        Assert.Empty(Replay(log, 5));
        Assert.False(log.CanResumeFrom(77));
        Assert.Empty(Replay(log, 77));
    }

    [Fact]
    public void The_oldest_deltas_go_first_past_the_entry_bound_and_the_ring_wraps_around()
    {
        var log = new DeltaLog(maxEntries: 4, maxBytes: 64 * 1024);
        for (ulong v = 1; v <= 11; v++) log.Add(v - 1, v, Delta($"dv_{v}"));

        Assert.Equal(4, log.Count);
        Assert.False(log.CanResumeFrom(6)); // its successor, 7, was dropped
        Assert.Equal(["dv_8", "dv_9", "dv_10", "dv_11"], Replay(log, 7).Select(e => e.Peer));
    }

    [Fact]
    public void The_byte_bound_drops_old_deltas_but_always_keeps_the_newest()
    {
        var big = Delta("dv_1", 3000).Length; // every delta below is this size
        var log = new DeltaLog(maxEntries: 32, maxBytes: 2 * big + 10);
        for (ulong v = 1; v <= 5; v++) log.Add(v - 1, v, Delta($"dv_{v}", 3000));
        Assert.Equal(2, log.Count);
        Assert.Equal(2 * big, log.Bytes);
        Assert.Equal(["dv_4", "dv_5"], Replay(log, 3).Select(e => e.Peer));

        // One delta larger than the whole budget is still kept, alone.
        log.Add(5, 6, Delta("dv_huge", 10_000));
        Assert.Equal(1, log.Count);
        Assert.Equal(["dv_huge"], Replay(log, 5).Select(e => e.Peer));
    }

    [Fact]
    public void Clearing_forgets_everything_and_the_log_fills_again()
    {
        var log = new DeltaLog(maxEntries: 4, maxBytes: 64 * 1024);
        for (ulong v = 1; v <= 6; v++) log.Add(v - 1, v, Delta($"dv_{v}"));
        log.Clear();
        Assert.Equal(0, log.Count);
        Assert.Equal(0, log.Bytes);
        Assert.False(log.CanResumeFrom(5));

        log.Add(10, 11, Delta("dv_after"));
        Assert.Equal(["dv_after"], Replay(log, 10).Select(e => e.Peer));
    }

    [Fact]
    public void The_same_delta_bytes_kept_by_many_streams_are_wrapped_apart_and_never_changed()
    {
        // The tailnet hands one array to every recipient of an identical delta: each stream numbers it itself.
        var shared = Delta("dv_shared");
        var copy = shared.ToArray();
        var first = new DeltaLog(4, 64 * 1024);
        var second = new DeltaLog(4, 64 * 1024);
        first.Add(1, 2, shared);
        second.Add(40, 41, shared);

        Assert.Equal([(1UL, 2UL, "dv_shared")], Replay(first, 1));
        Assert.Equal([(40UL, 41UL, "dv_shared")], Replay(second, 40));
        Assert.Equal(copy, shared);
    }
}
