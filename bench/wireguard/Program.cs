// WireGuard benchmark. In one run, on this machine:
//  1. handshakes per second on one core (responder work: decrypt an initiation, build the response);
//  2. iperf3 TCP throughput, both directions, through three pairs of namespaces:
//     wireguard-go <-> wireguard-go, weft <-> weft, weft <-> wireguard-go.
// Last line: wireguard: ours=<Mbit/s> wggo=<Mbit/s> ratio=<ours/wggo> handshakes_per_s=<n>
//
// Usage: weft-bench-wireguard [--seconds N] (iperf3 seconds per direction, default 10)

using System.Diagnostics;
using Weft.Contracts.Keys;
using Weft.Contracts.Noise;
using Weft.Lab;
using Weft.NodeAgent.WireGuard;

var seconds = args.Length >= 2 && args[0] == "--seconds" ? int.Parse(args[1]) : 10;

var (responderRate, fullRate) = MeasureHandshakes(TimeSpan.FromSeconds(3));
Console.WriteLine($"handshakes on one core: {responderRate:F0}/s as responder, {fullRate:F0}/s complete (both sides)");

Lab.RemoveLeftovers();
var go = await Throughput(WgImplementation.WireGuardGo, WgImplementation.WireGuardGo);
var ours = await Throughput(WgImplementation.Weft, WgImplementation.Weft);
var mixed = await Throughput(WgImplementation.Weft, WgImplementation.WireGuardGo);

Console.WriteLine($"wireguard-go <-> wireguard-go: {go.Forward:F0} / {go.Reverse:F0} Mbit/s (mean {go.Mean:F0})");
Console.WriteLine($"weft <-> weft:                 {ours.Forward:F0} / {ours.Reverse:F0} Mbit/s (mean {ours.Mean:F0})");
Console.WriteLine($"weft <-> wireguard-go:         {mixed.Forward:F0} / {mixed.Reverse:F0} Mbit/s (mean {mixed.Mean:F0})");
Console.WriteLine($"wireguard: ours={ours.Mean:F0} wggo={go.Mean:F0} ratio={ours.Mean / go.Mean:F2} handshakes_per_s={responderRate:F0}");
return 0;

async Task<(double Forward, double Reverse, double Mean)> Throughput(WgImplementation a, WgImplementation b)
{
    await using var lab = Lab.Create();
    var pair = WireGuardPair.Start(lab, a, b);
    var (nsA, nsB) = (pair.A.Namespace, pair.B.Namespace);
    if (Traffic.PingUntilAnswered(nsA, "100.64.0.2", TimeSpan.FromSeconds(20)) is null) throw new InvalidOperationException($"{a} <-> {b}: no tunnel");
    var duration = TimeSpan.FromSeconds(seconds);
    var forward = Traffic.Iperf(nsB, "100.64.0.2", nsA, duration);           // a sends to b
    var reverse = Traffic.Iperf(nsB, "100.64.0.2", nsA, duration, reverse: true); // b sends to a
    return (forward, reverse, (forward + reverse) / 2);
}

static (double Responder, double Full) MeasureHandshakes(TimeSpan duration)
{
    var clock = EngineClock.System;
    using var initiatorKey = Curve25519PrivateKey.Generate();
    using var responderKey = Curve25519PrivateKey.Generate();
    var initiatorIndices = new IndexTable();
    var responderIndices = new IndexTable();
    var toResponder = new Peer(responderKey.PublicKey, initiatorIndices);
    var toInitiator = new Peer(initiatorKey.PublicKey, responderIndices);
    toResponder.PrecomputeStaticStatic(initiatorKey);
    toInitiator.PrecomputeStaticStatic(responderKey);
    StaticSecretSource responderCache = (_, shared) => toInitiator.TryCopyStaticStatic(shared);
    var initiation = new byte[Messages.InitiationSize];
    var response = new byte[Messages.ResponseSize];

    // Responder: a batch of initiations prepared up front, then only the responder's work is timed.
    var batch = Enumerable.Range(0, 2000).Select(_ =>
    {
        var pending = Handshake.CreateInitiation(initiatorKey, toResponder, initiatorIndices, clock, initiation);
        initiatorIndices.Remove(pending.LocalIndex);
        pending.Dispose();
        return initiation.ToArray();
    }).ToArray();
    var watch = Stopwatch.StartNew();
    var done = 0;
    while (watch.Elapsed < duration)
    {
        var consumed = Handshake.ConsumeInitiation(responderKey, batch[done % batch.Length], responderCache)!;
        var keypair = Handshake.CreateResponse(consumed, toInitiator, responderIndices, clock, response);
        responderIndices.Remove(keypair.LocalIndex);
        keypair.Dispose();
        done++;
    }
    var responderRate = done / watch.Elapsed.TotalSeconds;

    // Complete handshakes: both sides' work on this one core.
    watch.Restart();
    var full = 0;
    while (watch.Elapsed < duration)
    {
        var pending = Handshake.CreateInitiation(initiatorKey, toResponder, initiatorIndices, clock, initiation);
        var consumed = Handshake.ConsumeInitiation(responderKey, initiation, responderCache)!;
        var responderPair = Handshake.CreateResponse(consumed, toInitiator, responderIndices, clock, response);
        initiatorIndices.TryGet(pending.LocalIndex, out var entry);
        var initiatorPair = Handshake.ConsumeResponse(pending, entry, response, clock)!;
        initiatorIndices.Remove(initiatorPair.LocalIndex);
        responderIndices.Remove(responderPair.LocalIndex);
        initiatorPair.Dispose();
        responderPair.Dispose();
        full++;
    }
    return (responderRate, full / watch.Elapsed.TotalSeconds);
}
