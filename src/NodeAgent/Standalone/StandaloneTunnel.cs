using Akka.Actor;
using Microsoft.Extensions.Logging;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.Tunnels;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Standalone;

/// <summary>
/// <c>weft-agent wg up</c>: our WireGuard engine on a real TUN from a wg-quick-style file, with no
/// coordinator, and the UAPI socket so that <c>wg show</c> and <c>wg set</c> work against it. It is
/// also the harness for interop tests and benchmarks against wireguard-go.
/// </summary>
public sealed class StandaloneTunnel : IAsyncDisposable
{
    private readonly ActorSystem _system;
    private readonly UapiServer _uapi;

    private StandaloneTunnel(WireGuardDevice device, ActorSystem system, IActorRef supervisor, UapiServer uapi)
    {
        Device = device;
        _system = system;
        Supervisor = supervisor;
        _uapi = uapi;
    }

    public WireGuardDevice Device { get; }

    public IActorRef Supervisor { get; }

    public static async Task<StandaloneTunnel> StartAsync(string interfaceName, WgQuickConfig config, WireGuardTimings timings, ILogger log)
    {
        var tun = LinuxTun.Create(interfaceName, config.Mtu);
        UdpTransport udp;
        try
        {
            udp = UdpTransport.Bind(config.ListenPort);
        }
        catch
        {
            tun.Dispose();
            throw;
        }
        var device = new WireGuardDevice(tun, udp, EngineClock.System, timings, log);
        var system = Agent.AgentActorSystem.Create("weft-agent");
        try
        {
            var supervisor = system.ActorOf(TunnelSupervisor.PropsFor(device), "tunnels");
            var timeout = TimeSpan.FromSeconds(10);
            await supervisor.Ask<PrivateKeySet>(new SetPrivateKey(config.PrivateKey), timeout);
            foreach (var peer in config.Peers) await supervisor.Ask<PeerConfigured>(new ConfigurePeer(peer), timeout);
            if (config.FirewallMark != 0) device.SetFirewallMark(config.FirewallMark);
            device.Start();
            LinkConfigurator.Up(interfaceName, config.Mtu, config.Addresses, config.Peers.SelectMany(p => p.AddAllowedIps));
            var uapi = new UapiServer(interfaceName, device, supervisor, log);
            return new StandaloneTunnel(device, system, supervisor, uapi);
        }
        catch
        {
            await system.Terminate();
            device.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _uapi.Dispose();
        await _system.Terminate();
        Device.Dispose(); // closing the TUN removes the interface
    }
}
