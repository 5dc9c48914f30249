using Weft.Lab;

namespace Weft.Integration.Tests.WireGuard;

/// <summary>Our engine against the real wireguard-go (Debian's, configured with wg), on real TUNs in network namespaces.</summary>
public class WireGuardInteropTests
{
    private static readonly TimeSpan IperfTime = TimeSpan.FromSeconds(2);

    [SkippableTheory]
    [InlineData(WgImplementation.Weft, WgImplementation.WireGuardGo)]
    [InlineData(WgImplementation.WireGuardGo, WgImplementation.Weft)]
    public async Task Either_side_initiates_and_ping_and_iperf_pass_both_ways(WgImplementation initiator, WgImplementation responder)
    {
        await using var lab = LabTest.Open("wireguard-go", "wg", "iperf3", "ping");
        var pair = WireGuardPair.Start(lab, initiator, responder);

        Assert.True(Traffic.Ping(pair.A.Namespace, "100.64.0.2", 5) >= 4, "the initiator's pings should pass");
        Assert.Equal(5, Traffic.Ping(pair.B.Namespace, "100.64.0.1", 5));
        Assert.NotNull(pair.A.LatestHandshake(pair.B.Identity.PublicKey));
        Assert.NotNull(pair.B.LatestHandshake(pair.A.Identity.PublicKey));

        Assert.True(Traffic.Iperf(pair.B.Namespace, "100.64.0.2", pair.A.Namespace, IperfTime) > 0);
        Assert.True(Traffic.Iperf(pair.B.Namespace, "100.64.0.2", pair.A.Namespace, IperfTime, reverse: true) > 0);
    }

    [SkippableFact]
    public async Task Like_wireguard_go_the_engine_ends_when_its_interface_is_deleted_and_removes_its_socket()
    {
        await using var lab = LabTest.Open("wireguard-go", "wg", "ping");
        var pair = WireGuardPair.Start(lab, WgImplementation.Weft, WgImplementation.WireGuardGo);
        Assert.True(Traffic.Ping(pair.A.Namespace, "100.64.0.2", 3) >= 2);

        foreach (var side in new[] { pair.B, pair.A })
        {
            side.Namespace.Run("ip", "link", "del", side.Name);
            Assert.True(side.Process.WaitForExit(TimeSpan.FromSeconds(30)) is not null, $"{side.Implementation} still runs without its interface:\n{side.Process.Output}");
            Assert.False(File.Exists($"/var/run/wireguard/{side.Name}.sock"), $"{side.Implementation} left its UAPI socket");
        }
        Assert.Equal(1, pair.A.Process.WaitForExit(TimeSpan.Zero));
        Assert.Contains($"the TUN interface {pair.A.Name} was deleted", pair.A.Process.Output);
    }

    [SkippableFact]
    public async Task A_preshared_key_interoperates_and_a_wrong_one_never_connects()
    {
        var psk = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var other = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));

        await using (var lab = LabTest.Open("wireguard-go", "wg", "ping"))
        {
            var pair = WireGuardPair.Start(lab, WgImplementation.Weft, WgImplementation.WireGuardGo, psk, psk);
            Assert.True(Traffic.Ping(pair.A.Namespace, "100.64.0.2", 4) >= 3);
        }
        await using (var lab = LabTest.Open("wireguard-go", "wg", "ping"))
        {
            var pair = WireGuardPair.Start(lab, WgImplementation.Weft, WgImplementation.WireGuardGo, psk, other);
            Assert.Equal(0, Traffic.Ping(pair.A.Namespace, "100.64.0.2", 3));
            Assert.Null(pair.A.LatestHandshake(pair.B.Identity.PublicKey));
        }
    }

    [SkippableFact]
    public async Task Sessions_rekey_with_wireguard_go_while_a_ping_keeps_running()
    {
        await using var lab = LabTest.Open("wireguard-go", "wg", "ping");
        // Our side rekeys every 3 s instead of 120 s; it is the initiator, so it drives the rekeys.
        var pair = WireGuardPair.Start(lab, WgImplementation.Weft, WgImplementation.WireGuardGo, agentArgumentsA: ["--rekey-after-seconds", "3"]);
        Assert.True(Traffic.Ping(pair.A.Namespace, "100.64.0.2", 2) >= 1);

        var ping = Traffic.StartPing(pair.A.Namespace, "100.64.0.2", 0.1);
        var handshakes = new HashSet<DateTimeOffset>();
        for (var second = 0; second < 12; second++)
        {
            if (pair.B.LatestHandshake(pair.A.Identity.PublicKey) is { } at) handshakes.Add(at);
            await Task.Delay(1000);
        }
        var (sent, received) = Traffic.StopPing(ping);

        Assert.True(handshakes.Count >= 3, $"expected several rekeys in 12 s, saw handshakes at {string.Join(", ", handshakes)}");
        Assert.True(sent - received <= 2, $"{sent - received} of {sent} pings lost across rekeys");
    }

    [SkippableTheory]
    [InlineData(WgImplementation.WireGuardGo)] // wireguard-go moves; our engine must follow it
    [InlineData(WgImplementation.Weft)]        // we move; wireguard-go must follow us
    public async Task When_one_side_moves_to_a_new_underlay_address_traffic_continues(WgImplementation mover)
    {
        await using var lab = LabTest.Open("wireguard-go", "wg", "ping");
        var stayer = mover == WgImplementation.Weft ? WgImplementation.WireGuardGo : WgImplementation.Weft;
        var pair = WireGuardPair.Start(lab, mover, stayer);
        Assert.True(Traffic.Ping(pair.A.Namespace, "100.64.0.2", 3) >= 2);

        // A (the mover) loses its address and gets a new one on the same link, as after a DHCP change.
        var link = pair.A.Namespace.Run("ip", "-o", "-4", "address", "show").Split('\n')
            .First(l => l.Contains(WireGuardPair.UnderlayA + "/24")).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        pair.A.Namespace.Run("ip", "address", "del", WireGuardPair.UnderlayA + "/24", "dev", link);
        pair.A.Namespace.Run("ip", "address", "add", "198.18.0.3/24", "dev", link);

        // wireguard-go keeps its old source address until its next handshake; ours switches at the next packet.
        Assert.NotNull(Traffic.PingUntilAnswered(pair.A.Namespace, "100.64.0.2", TimeSpan.FromSeconds(30)));
        Assert.Equal(5, Traffic.Ping(pair.A.Namespace, "100.64.0.2", 5));
        Assert.StartsWith("198.18.0.3:", pair.B.Endpoint(pair.A.Identity.PublicKey));
        Assert.Equal(3, Traffic.Ping(pair.B.Namespace, "100.64.0.1", 3));
    }
}
