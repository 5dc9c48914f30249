using System.Net;
using Akka.Actor;
using Akka.TestKit;
using Weft.Contracts.Control;
using Weft.NodeAgent.Agent;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.Paths;
using Weft.NodeAgent.Tunnels;
using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Paths;

/// <summary>
/// What counts as a roam, on the tunnel's real socket and a real STUN server, with the machine's
/// interfaces played by the test (the real ones moving is the NAT lab's roam, as root): the network
/// behind the default route changing is one; a container bridge coming and going is only new endpoints.
/// A roam makes every relay connection, the control stream and every path start over, so a Docker host
/// that counted each container start as one kept falling back to the relays all day.
/// </summary>
public sealed class RoamingTests : Akka.TestKit.Xunit2.TestKit
{
    private readonly object _gate = new();
    private List<MachineInterface> _machine = [];

    private void Machine(params MachineInterface[] interfaces)
    {
        lock (_gate) _machine = [.. interfaces];
    }

    private static MachineInterface Nic(string name, bool gateway, params string[] addresses) =>
        new(name, gateway, [.. addresses.Select(IPAddress.Parse)]);

    [Fact]
    public async Task Only_a_change_of_the_network_behind_the_default_route_is_a_roam_not_a_bridge_that_comes_and_goes()
    {
        await using var stun = new LoopbackStunServer();
        using var device = new WireGuardDevice(new VirtualTun("roaming"), UdpTransport.Bind(0));
        var port = device.ListenPort;
        Machine(Nic("eth0", true, "198.18.9.2", "fd7a:115c:a1e0::1"), Nic("wlan0", false, "198.18.10.2"));
        var parent = DiscoveryOn(device, stun.Port);
        var first = await Published(parent, endpoints => endpoints.Contains($"198.18.9.2:{port}"));
        Assert.Equal([$"198.18.9.2:{port}", $"198.18.10.2:{port}"], first.Report.LocalEndpoints); // the tailnet's own range is never advertised

        // A container starts: docker0 comes up with an address. New endpoints, the same network.
        Machine(Nic("eth0", true, "198.18.9.2"), Nic("wlan0", false, "198.18.10.2"), Nic("docker0", false, "198.19.0.1"));
        var (_, roamed) = await PublishedWithRoam(parent, endpoints => endpoints.Contains($"198.19.0.1:{port}"));
        Assert.False(roamed, "a bridge coming up was taken for a roam");

        // ... and stops: it goes again. Still the same network.
        Machine(Nic("eth0", true, "198.18.9.2"), Nic("wlan0", false, "198.18.10.2"));
        (_, roamed) = await PublishedWithRoam(parent, endpoints => !endpoints.Contains($"198.19.0.1:{port}"));
        Assert.False(roamed, "a bridge going away was taken for a roam");

        // A new DHCP lease on the interface behind the default route: a roam.
        Machine(Nic("eth0", true, "198.18.9.3"), Nic("wlan0", false, "198.18.10.2"));
        (_, roamed) = await PublishedWithRoam(parent, endpoints => endpoints.Contains($"198.18.9.3:{port}"));
        Assert.True(roamed, "a new address behind the default route was not taken for a roam");

        // The default route moves to wlan0 (the cable is pulled), though no address changed: a roam.
        Machine(Nic("eth0", false, "198.18.9.3"), Nic("wlan0", true, "198.18.10.2"));
        (_, roamed) = await PublishedWithRoam(parent, _ => true);
        Assert.True(roamed, "the default route moving to another interface was not taken for a roam");
    }

    [Fact]
    public async Task A_machine_that_slept_counts_as_roamed_and_its_tunnels_hear_how_long_it_slept()
    {
        // A laptop resumes on the same network: nothing about its interfaces changed, but its NAT mappings
        // are gone and its TCP connections are dead without knowing it.
        await using var stun = new LoopbackStunServer();
        var clock = new SleepingClock();
        using var device = new WireGuardDevice(new VirtualTun("sleeper"), UdpTransport.Bind(0), clock);
        var port = device.ListenPort;
        Machine(Nic("eth0", true, "198.18.9.2"));
        var parent = DiscoveryOn(device, stun.Port);
        await Published(parent, endpoints => endpoints.Contains($"198.18.9.2:{port}"));
        // Awake, nothing changes: no report comes as a roam.
        Assert.DoesNotContain(parent.ReceiveWhile(TimeSpan.FromMilliseconds(500), message => message), m => m is OwnEndpointsChanged { Roamed: true } or MachineSlept);

        clock.Sleep(TimeSpan.FromMinutes(40));

        var slept = await parent.FishForMessageAsync<MachineSlept>(_ => true, TimeSpan.FromSeconds(10));
        Assert.InRange(slept.Slept, TimeSpan.FromMinutes(39), TimeSpan.FromMinutes(41));
        await parent.FishForMessageAsync<OwnEndpointsChanged>(changed => changed.Roamed, TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_move_while_a_probe_is_under_way_is_one_roam_not_two()
    {
        // A roam makes every relay connection, the control stream and every path start over. A move that came while a
        // probe was out was published as a roam with that probe's stale answers, and again with the next probe's.
        using var silentStun = new System.Net.Sockets.UdpClient(new IPEndPoint(IPAddress.Loopback, 0)); // never answers: each probe lasts its full window
        var stunPort = ((IPEndPoint)silentStun.Client.LocalEndPoint!).Port;
        using var device = new WireGuardDevice(new VirtualTun("moving"), UdpTransport.Bind(0));
        var port = device.ListenPort;
        Machine(Nic("eth0", true, "198.18.9.2"));
        var parent = DiscoveryOn(device, stunPort);
        await Task.Delay(300); // the first probe is out (for 1.5 s)
        Machine(Nic("eth0", true, "198.18.9.3")); // a new lease: a roam

        // Both probe windows and more: one roam, published with the new address.
        var told = parent.ReceiveWhile(TimeSpan.FromSeconds(5), message => message);
        var roams = told.OfType<OwnEndpointsChanged>().Where(changed => changed.Roamed).ToList();
        Assert.Single(roams);
        Assert.Contains(new IPEndPoint(IPAddress.Parse("198.18.9.3"), port), roams[0].Endpoints);
    }

    /// <summary>Endpoint discovery on <paramref name="device"/>, reading the machine the test plays every 100 ms, given a relay map whose STUN server is at <paramref name="stunPort"/>; returns its parent.</summary>
    private TestProbe DiscoveryOn(WireGuardDevice device, int stunPort)
    {
        var parent = CreateTestProbe();
        var local = new LocalAddressSource(null, [], DiscoverInterfaces: true, TimeSpan.FromMilliseconds(100))
        {
            ReadInterfaces = () => { lock (_gate) return _machine; },
        };
        var discovery = NetcheckTests.StartNetcheck(parent, device, local);
        discovery.Tell(new RelayMapKnown(new RelayMap { Regions = { new RelayRegion { Id = 3, Code = "here", Nodes = { new RelayNode { Host = "127.0.0.1", Port = 1, StunPort = stunPort } } } } }, "127.0.0.1"));
        return parent;
    }

    /// <summary>The machine's clocks, which the test puts to sleep: the wall clock and the time asleep jump ahead, the monotonic clock stands still.</summary>
    private sealed class SleepingClock : EngineClock
    {
        private long _sleptTicks;

        public override long NowMs => Environment.TickCount64 + 1;

        public override DateTimeOffset WallNow => DateTimeOffset.UtcNow + TimeSpan.FromTicks(Interlocked.Read(ref _sleptTicks));

        public override long SleptMs => Interlocked.Read(ref _sleptTicks) / TimeSpan.TicksPerMillisecond;

        public void Sleep(TimeSpan span) => Interlocked.Add(ref _sleptTicks, span.Ticks);
    }

    private static async Task<NetcheckDone> Published(TestProbe parent, Func<IReadOnlyList<string>, bool> holds) =>
        await parent.FishForMessageAsync<NetcheckDone>(done => holds(done.Report.LocalEndpoints), TimeSpan.FromSeconds(10));

    /// <summary>The next report whose local endpoints satisfy <paramref name="holds"/>, and whether it came as a roam (a roam is told at once after it).</summary>
    private static async Task<(NetcheckDone Done, bool Roamed)> PublishedWithRoam(TestProbe parent, Func<IReadOnlyList<string>, bool> holds)
    {
        var done = await Published(parent, holds);
        var after = parent.ReceiveWhile(TimeSpan.FromMilliseconds(300), message => message);
        return (done, after.OfType<OwnEndpointsChanged>().Any(changed => changed.Roamed));
    }
}
