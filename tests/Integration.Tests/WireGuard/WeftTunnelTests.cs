using Weft.Lab;

namespace Weft.Integration.Tests.WireGuard;

/// <summary>Our engine against itself on real TUNs, and the real wg tool against our UAPI.</summary>
public class WeftTunnelTests
{
    [SkippableFact]
    public async Task Two_weft_engines_pass_ping_and_iperf_both_ways_on_real_tuns()
    {
        await using var lab = LabTest.Open("iperf3", "ping");
        var pair = WireGuardPair.Start(lab, WgImplementation.Weft, WgImplementation.Weft);

        Assert.True(Traffic.Ping(pair.A.Namespace, "100.64.0.2", 5) >= 4);
        Assert.Equal(5, Traffic.Ping(pair.B.Namespace, "100.64.0.1", 5));
        Assert.True(Traffic.Iperf(pair.B.Namespace, "100.64.0.2", pair.A.Namespace, TimeSpan.FromSeconds(2)) > 0);
        Assert.True(Traffic.Iperf(pair.B.Namespace, "100.64.0.2", pair.A.Namespace, TimeSpan.FromSeconds(2), reverse: true) > 0);
    }

    [SkippableFact]
    public async Task Wg_show_lists_the_peer_its_latest_handshake_and_transfer_counters()
    {
        await using var lab = LabTest.Open("wg", "ping");
        var pair = WireGuardPair.Start(lab, WgImplementation.Weft, WgImplementation.Weft);
        Traffic.Ping(pair.A.Namespace, "100.64.0.2", 3);

        var show = pair.A.Show();

        Assert.Contains($"interface: {pair.A.Name}", show);
        Assert.Contains($"public key: {pair.A.Identity.PublicKey}", show);
        Assert.Contains("listening port: 51820", show);
        Assert.Contains($"peer: {pair.B.Identity.PublicKey}", show);
        Assert.Contains($"endpoint: {WireGuardPair.UnderlayB}:51821", show);
        Assert.Contains("allowed ips: 100.64.0.2/32", show);
        Assert.Contains("latest handshake:", show);
        Assert.Matches(@"transfer: [\d.]+ \w*B received, [\d.]+ \w*B sent", show);
    }

    [SkippableFact]
    public async Task Wg_set_changes_our_engine_as_it_changes_wireguard_go()
    {
        await using var lab = LabTest.Open("wg", "ping");
        var pair = WireGuardPair.Start(lab, WgImplementation.Weft, WgImplementation.Weft);
        var peer = pair.B.Identity.PublicKey;

        pair.A.Set("peer", peer, "allowed-ips", "100.64.0.2/32,100.64.9.0/24", "persistent-keepalive", "25");
        var show = pair.A.Show();
        Assert.Contains("allowed ips: 100.64.0.2/32, 100.64.9.0/24", show);
        Assert.Contains("persistent keepalive: every 25 seconds", show);

        pair.A.Set("listen-port", "51900");
        Assert.Contains("listening port: 51900", pair.A.Show());
        // B still knows A at the old port; A's next packets come from the new one, and B roams to it.
        // (The keepalive turned on above started a handshake from the old port; its answer is lost,
        // so the path heals at the next handshake attempt, up to REKEY_TIMEOUT later.)
        Assert.NotNull(Traffic.PingUntilAnswered(pair.A.Namespace, "100.64.0.2", TimeSpan.FromSeconds(15)));
        Assert.Equal(3, Traffic.Ping(pair.A.Namespace, "100.64.0.2", 3));
        Assert.EndsWith(":51900", pair.B.Endpoint(pair.A.Identity.PublicKey));

        pair.A.Set("peer", peer, "remove");
        Assert.DoesNotContain(peer, pair.A.Show());
        Assert.Equal(0, Traffic.Ping(pair.A.Namespace, "100.64.0.2", 2, waitSeconds: 1));
    }
}
