using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay.Tests;

/// <summary>The queues in front of one connection's writer.</summary>
public class RelayOutboxTests
{
    [Fact]
    public async Task A_writer_that_is_stuck_holds_one_pending_wake_however_much_is_queued_and_drains_everything_in_order_once_it_runs()
    {
        // A client that stops reading (but keeps pinging) leaves its writer blocked, while everyone who sends to it
        // keeps queueing. A wake counted per frame grew with each one until it overflowed, and the overflow threw in
        // the thread of whoever sent next: an innocent sender's connection was torn down.
        var outbox = new RelayOutbox(controlDepth: 4, discoDepth: 4, dataDepth: 4);
        using var destination = Curve25519PrivateKey.Generate();
        var to = destination.PublicKey;
        for (var i = 0; i < 10_000; i++)
            Assert.True(outbox.TryEnqueuePacket(RelayFrame.Build(RelayFrameType.RecvPacket, to, [(byte)i]), [(byte)i]));
        outbox.TryEnqueueControl(RelayFrame.Build(RelayFrameType.KeepAlive, []));
        Assert.Equal(1, outbox.PendingWakes);

        // Once it runs, the writer takes the control frame first, then the newest data frames the bounded queue kept.
        using var written = new MemoryStream();
        using var stop = new CancellationTokenSource();
        var drain = outbox.DrainAsync(written, stop.Token);
        var expected = 5 * RelayFrame.HeaderSize + 4 * (RelayFrame.KeySize + 1);
        for (var waited = 0; written.Length < expected && waited < 10_000; waited += 10) await Task.Delay(10);
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => drain);

        var bytes = written.ToArray();
        Assert.Equal(expected, bytes.Length);
        Assert.Equal((byte)RelayFrameType.KeepAlive, bytes[0]);
        var payloads = Enumerable.Range(0, 4).Select(i => bytes[RelayFrame.HeaderSize + (i + 1) * (RelayFrame.HeaderSize + RelayFrame.KeySize + 1) - 1]).ToArray();
        Assert.Equal(new[] { (byte)(9_996 % 256), (byte)(9_997 % 256), (byte)(9_998 % 256), (byte)(9_999 % 256) }, payloads);
        Assert.Equal(0, outbox.PendingWakes);
    }
}
