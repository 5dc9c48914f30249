using System.Collections.Immutable;
using Akka.Actor;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Contracts.Control;
using Weft.NodeAgent.Agent;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Dns;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Dns;

/// <summary>
/// MagicDNS as the system's resolver (a real resolv.conf, in a folder of the test's own) across a
/// restart of the data plane that drives it. The data plane's periodic check is what takes the file
/// back when another program rewrites it; the restarted data plane must keep checking, and must not
/// tell the system again what it already holds.
/// </summary>
public sealed class MagicDnsRestartTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(15);
    private const string Suffix = "restart.weft.internal";
    private const string Original = "nameserver 198.18.0.53\nsearch lab.example\n";
    private readonly string _directory = Directory.CreateTempSubdirectory("weft-dns-restart-").FullName;

    private static NetMapView View => NetMapView.Empty with
    {
        Version = 1,
        TailnetId = "tn_dns",
        // An address of 127/8 of its own, so that port 53 is free whatever else this host runs.
        Self = new Node { Id = "self", Name = "self", Fqdn = $"self.{Suffix}.", Addresses = { "127.83.29.7/32" } },
    };

    /// <summary>What the control client tells a new watcher: its state, then its netmap.</summary>
    private static void TellRunningWithNetMap(IActorRef plane)
    {
        plane.Tell(new ControlStateChanged(ControlState.Running, null, "test"));
        plane.Tell(new NetMapChanged(View, NetMapApplied.Replaced));
    }

    private async Task ExpectWatchFrom(Akka.TestKit.TestProbe control, IActorRef plane) =>
        await control.FishForMessageAsync<WatchControl>(watch => watch.Watcher.Equals(plane), Limit);

    private async Task WaitUntilOurs(string path)
    {
        await AwaitConditionAsync(() => Task.FromResult(File.ReadAllText(path).Contains(ResolvConfFile.Marker)), Limit, TimeSpan.FromMilliseconds(50));
        Assert.Contains("nameserver 127.83.29.7", File.ReadAllText(path));
        Assert.Contains(Suffix, File.ReadAllText(path));
    }

    [SkippableFact]
    public async Task A_restarted_data_plane_still_takes_back_a_resolv_conf_another_program_rewrote()
    {
        Prerequisite.RequireRoot("binds port 53 on loopback");
        var resolvConf = Path.Combine(_directory, "resolv.conf");
        File.WriteAllText(resolvConf, Original);
        using var dns = new MagicDns(53, NullLogger.Instance, new ResolvConfFile(resolvConf, _directory, NullLogger.Instance));
        using var device = new WireGuardDevice(new VirtualTun("dnsrst0"), UdpTransport.Bind(0));
        var control = CreateTestProbe();
        var options = new DataPlaneOptions
        {
            Device = device,
            Link = new NoTunnelLink(),
            DiscoverEndpoints = false,
            Dns = dns,
            SystemDnsRecheckInterval = TimeSpan.FromMilliseconds(100),
        };
        var parent = Sys.ActorOf(RestartingParent.PropsFor(DataPlane.PropsFor(options, control.Ref), "dataplane"));
        var plane = await parent.Ask<IActorRef>(RestartingParent.GetChild.Instance, Limit);
        await ExpectWatchFrom(control, plane);
        TellRunningWithNetMap(plane);
        await WaitUntilOurs(resolvConf);

        // Before the restart: a rewrite (a DHCP client renewing its lease) is taken back.
        File.WriteAllText(resolvConf, "nameserver 198.18.0.54\n");
        await WaitUntilOurs(resolvConf);

        // The data plane fails and restarts; it watches the control client again and hears its netmap.
        plane.Tell(Kill.Instance);
        await ExpectWatchFrom(control, plane);
        TellRunningWithNetMap(plane);

        // After it: another rewrite is still taken back, so the check runs in the new incarnation too.
        File.WriteAllText(resolvConf, "nameserver 198.18.0.55\n");
        await WaitUntilOurs(resolvConf);
        Assert.Single(dns.Endpoints); // the same server: the restart did not bind a second one
        Assert.True(await parent.GracefulStop(Limit)); // before MagicDNS and the engine are disposed
    }

    public new void Dispose()
    {
        base.Dispose();
        Directory.Delete(_directory, recursive: true);
    }
}
