using Akka.Actor;
using Weft.NodeAgent.Agent;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Net;

/// <summary>
/// The data plane's routing recheck runs while the agent is down too: the routes taken away as it went
/// down may have stayed (a delete the kernel refused), and with them the machine's traffic would go into
/// a tunnel with no peers until the next up.
/// </summary>
public sealed class RoutingRecheckTests : Akka.TestKit.Xunit2.TestKit
{
    [Fact]
    public async Task The_routing_recheck_goes_on_while_the_agent_is_down()
    {
        using var device = new WireGuardDevice(new VirtualTun("recheck0"), UdpTransport.Bind(0));
        var link = new CountingLink();
        var control = CreateTestProbe();
        var plane = Sys.ActorOf(DataPlane.PropsFor(new DataPlaneOptions
        {
            Device = device, Link = link, DiscoverEndpoints = false, RoutingRecheckInterval = TimeSpan.FromMilliseconds(100),
        }, control.Ref));
        await control.FishForMessageAsync<WatchControl>(watch => watch.Watcher.Equals(plane), TimeSpan.FromSeconds(10));
        plane.Tell(new ControlStateChanged(ControlState.Stopped, null, "weft-agent down"));

        var before = link.Rechecks;
        await AwaitConditionAsync(() => Task.FromResult(link.Rechecks >= before + 3), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(50));
    }

    private sealed class CountingLink : ITunnelLink
    {
        private int _rechecks;

        public int Rechecks => Volatile.Read(ref _rechecks);

        public void Up() { }

        public void SetAddresses(IReadOnlyList<IpPrefix> addresses) { }

        public void SetRoutes(IReadOnlyCollection<IpPrefix> routes) { }

        public IReadOnlyList<string> Reassert()
        {
            Interlocked.Increment(ref _rechecks);
            return [];
        }
    }
}
