using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Weft.Contracts.Keys;

namespace Weft.Relay.Tests;

/// <summary>The relay's counts reach its meter (Weft.Relay), which a host exports (the coordinator at /metrics).</summary>
public class RelayMetricsTests
{
    [Fact]
    public async Task Forwarded_packets_their_bytes_drops_and_access_checks_are_measured_on_the_Weft_Relay_meter()
    {
        // Other tests' relays run in this process too: only this relay's traffic is known, so the checks are "at least".
        var measured = new ConcurrentDictionary<string, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == RelayMetrics.MeterName) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var labels = string.Concat(tags.ToArray().Select(t => $",{t.Key}={t.Value}"));
            measured.AddOrUpdate(instrument.Name + labels, value, (_, sum) => sum + value);
        });
        listener.Start();

        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        using var outKey = Curve25519PrivateKey.Generate();
        var checkedRelay = lab.StartRelay(configure: options => options with
        {
            AccessRecheckInterval = TimeSpan.FromMilliseconds(200),
            AccessCheck = RelayLab.EachTicket((ticket, _) => Task.FromResult<bool?>(ticket.NodeKey == outKey.PublicKey ? null : true)),
        });
        await lab.Connect(checkedRelay);
        await lab.Connect(checkedRelay, outKey); // the cluster cannot tell about it: in on its signature
        var (alice, _) = await lab.Connect(relay);
        var (bob, bobKey) = await lab.Connect(relay);
        Assert.True(alice.TrySend(bobKey.PublicKey, "twelve bytes"u8));
        Assert.NotNull(await RelayLab.NextPacket(bob));
        using var nobody = Curve25519PrivateKey.Generate();
        alice.TrySend(nobody.PublicKey, "lost"u8);
        Assert.True(await RelayLab.Eventually(() => relay.Counters.DroppedFor("unknown_destination") == 1));

        Assert.True(measured.GetValueOrDefault("weft.relay.packets,path=local") >= 1);
        Assert.True(measured.GetValueOrDefault("weft.relay.bytes") >= 12);
        Assert.True(measured.GetValueOrDefault("weft.relay.drops,reason=unknown_destination") >= 1);
        Assert.True(measured.GetValueOrDefault("weft.relay.access_checks,answer=allowed,when=login") >= 1);
        Assert.True(measured.GetValueOrDefault("weft.relay.access_checks,answer=unconfirmed,when=login") >= 1);
        Assert.True(await RelayLab.Eventually(() => measured.GetValueOrDefault("weft.relay.access_checks,answer=allowed,when=recheck") >= 1
            && measured.GetValueOrDefault("weft.relay.access_checks,answer=unconfirmed,when=recheck") >= 1), "the live connections' checks are measured");
    }
}
