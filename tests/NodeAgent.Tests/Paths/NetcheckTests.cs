using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Weft.Contracts.Control;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.Paths;
using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Paths;

/// <summary>
/// Netcheck, the agent's STUN client, on the tunnel's real UDP socket: against coturn (a STUN server
/// that is not ours), and the socket's demultiplexing of STUN, disco and WireGuard.
/// </summary>
public sealed class NetcheckTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private readonly WireGuardDevice _device = new(new VirtualTun("netcheck"), UdpTransport.Bind(0));

    [SkippableFact]
    public void Netcheck_reads_its_mapped_address_and_latency_from_coturn_through_the_tunnels_own_socket()
    {
        const string turnserver = "/usr/bin/turnserver";
        if (!File.Exists(turnserver))
        {
            Assert.False(Environment.GetEnvironmentVariable("WEFT_REQUIRE_ALL_TESTS") == "1", "coturn is missing (test.sh installs it)");
            Skip.If(true, "coturn is not installed (apt install coturn)");
        }
        var folder = Directory.CreateTempSubdirectory("weft-coturn-");
        var port = FreeUdpPort();
        using var coturn = Process.Start(new ProcessStartInfo(turnserver,
            ["-n", "-L", "127.0.0.1", "-p", port.ToString(), "--stun-only", "--no-cli", "--no-tls", "--no-dtls", "--no-auth",
             "-b", Path.Combine(folder.FullName, "turndb"), "--pidfile", Path.Combine(folder.FullName, "turn.pid"), "--no-stdout-log",
             "--log-file", Path.Combine(folder.FullName, "turn.log")]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        try
        {
            var discovery = StartNetcheck(this, _device);
            var map = new RelayMap { Regions = { new RelayRegion { Id = 7, Code = "coturn", Nodes = { new RelayNode { Host = "127.0.0.1", Port = 1, StunPort = port } } } } };
            discovery.Tell(new RelayMapKnown(map, "127.0.0.1"));

            // coturn needs a moment to listen: ask until a report has an answer in it.
            NetcheckReport? report = null;
            for (var attempt = 0; attempt < 20 && report is not { Udp: true }; attempt++)
            {
                discovery.Tell(GetNetcheck.Instance);
                report = (NetcheckReport)FishForMessage(m => m is NetcheckReport, TimeSpan.FromSeconds(10));
                if (report is not { Udp: true }) Thread.Sleep(250);
            }
            Assert.NotNull(report);
            Assert.True(report.Udp, "coturn answered no binding request");
            Assert.Equal([$"127.0.0.1:{_device.ListenPort}"], report.StunAddresses);
            var region = Assert.Single(report.Regions);
            Assert.Equal(7, region.RegionId);
            Assert.NotNull(region.LatencyMs);
            Assert.Equal(7, report.HomeRegion);
            Assert.Equal(["127.0.0.1:9"], report.LocalEndpoints);
        }
        finally
        {
            coturn.Kill(entireProcessTree: true);
            coturn.WaitForExit(5000);
            folder.Delete(recursive: true);
        }
    }

    /// <summary>
    /// The local endpoints are known from the start: a probe answered at once (a STUN server on the same
    /// host answers in well under a timer tick) publishes them in the first report. They used to come
    /// on the first tick of the refresh timer, and a probe that finished before it reported none.
    /// </summary>
    [Fact]
    public async Task The_first_report_carries_the_local_endpoints_even_when_stun_answers_at_once()
    {
        for (var round = 0; round < 5; round++)
        {
            await using var stun = new LoopbackStunServer();
            using var device = new WireGuardDevice(new VirtualTun($"netcheck-first-{round}"), UdpTransport.Bind(0));
            var parent = CreateTestProbe();
            var discovery = StartNetcheck(parent, device);
            discovery.Tell(new RelayMapKnown(new RelayMap { Regions = { new RelayRegion { Id = 3, Code = "here", Nodes = { new RelayNode { Host = "127.0.0.1", Port = 1, StunPort = stun.Port } } } } }, "127.0.0.1"));

            var done = await parent.FishForMessageAsync<NetcheckDone>(_ => true, TimeSpan.FromSeconds(10));
            Assert.True(done.Report.Udp, "the STUN server's answer was not counted");
            Assert.Equal(["127.0.0.1:9"], done.Report.LocalEndpoints);
            Assert.Contains(IPEndPoint.Parse("127.0.0.1:9"), done.Endpoints);
            Assert.Contains(IPEndPoint.Parse($"127.0.0.1:{device.ListenPort}"), done.Endpoints);
            Assert.True(stun.Answered >= 1, "the STUN server answered no request");
            Sys.Stop(discovery);
        }
    }

    [Fact]
    public void The_shared_socket_tells_wireguard_disco_and_stun_apart_by_shape()
    {
        Assert.Equal(DatagramKind.WireGuard, MagicSocket.Classify([1, 0, 0, 0, 9, 9]));
        Assert.Equal(DatagramKind.WireGuard, MagicSocket.Classify([4, 0, 0, 0]));
        Assert.Equal(DatagramKind.Stun, MagicSocket.Classify(Contracts.Stun.StunMessage.BindingResponseFor(new byte[12], IPEndPoint.Parse("198.18.0.1:1"))));
        byte[] disco = [.. Contracts.Disco.DiscoPacket.Magic, .. new byte[Contracts.Disco.DiscoPacket.Overhead]];
        Assert.Equal(DatagramKind.Disco, MagicSocket.Classify(disco));
        Assert.Equal(DatagramKind.Unknown, MagicSocket.Classify(disco[..10]));
        Assert.Equal(DatagramKind.Unknown, MagicSocket.Classify([5, 0, 0, 0]));
        Assert.Equal(DatagramKind.Unknown, MagicSocket.Classify([]));
    }

    /// <summary>
    /// Netcheck on <paramref name="device"/>'s own socket, wired as the agent wires it (STUN answers go to
    /// the discovery actor), with the machine's addresses from <paramref name="local"/> (by default one local
    /// endpoint given on the command line: 127.0.0.1:9).
    /// </summary>
    internal static IActorRef StartNetcheck(Akka.TestKit.TestKitBase parent, WireGuardDevice device, LocalAddressSource? local = null)
    {
        var discovery = parent.ChildActorOf(EndpointDiscovery.PropsFor(device, local ?? new LocalAddressSource(null, ["127.0.0.1:9"], false, TimeSpan.FromMinutes(1))));
        device.OtherPacketHandler = (datagram, source) =>
        {
            if (MagicSocket.Classify(datagram.Span) != DatagramKind.Stun) return false;
            discovery.Tell(new StunArrived(datagram.ToArray(), source, device.Clock.NowMs));
            return true;
        };
        device.Start();
        return discovery;
    }

    private static int FreeUdpPort()
    {
        using var socket = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.Client.LocalEndPoint!).Port;
    }

    public new void Dispose()
    {
        _device.Dispose();
        base.Dispose();
    }
}
