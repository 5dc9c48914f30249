using System.Collections.Immutable;
using Akka.Actor;
using Microsoft.Extensions.Logging;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Agent;

/// <summary>What <c>weft-agent up</c> was told.</summary>
public sealed record AgentDaemonOptions
{
    public required IReadOnlyList<Uri> Coordinators { get; init; }
    public required string StateDirectory { get; init; }
    public required string Hostname { get; init; }
    public string? AuthKey { get; init; }
    public string? Tailnet { get; init; }
    public bool ForceReauth { get; init; }
    public ImmutableArray<string> StaticEndpoints { get; init; } = [];
    /// <summary>False runs the control client alone (no TUN, no root needed): it shows what it would connect to.</summary>
    public bool Tunnels { get; init; } = true;
    public string TunName { get; init; } = "weft0";
    /// <summary>Tailscale's MTU: fits inside any underlay path of 1360 bytes or more, IPv6 included.</summary>
    public int Mtu { get; init; } = 1280;
    /// <summary>The WireGuard UDP port (Tailscale's default); 0 picks a free one.</summary>
    public int Port { get; init; } = 41641;
    /// <summary>The MagicDNS port on the tailnet addresses (53; tests may move it).</summary>
    public int DnsPort { get; init; } = 53;
    /// <summary>Subnet routes this device offers, plus 0.0.0.0/0 and ::/0 as an exit node.</summary>
    public ImmutableArray<string> AdvertisedRoutes { get; init; } = [];
    public bool SnatSubnetRoutes { get; init; } = true;
    public bool AcceptRoutes { get; init; }
    public string? ExitNode { get; init; }
}

/// <summary>
/// The agent as a whole (<c>weft-agent up</c>): an actor system with the ControlClient and the
/// DataPlane (which supervises the tunnels) under the <see cref="AgentSupervisor"/>, the WireGuard
/// engine on a real TUN, MagicDNS, and the local API the CLI talks to. The engine and the TUN live here, outside the actors, so that an
/// actor restart never takes the interface down.
/// </summary>
public sealed class AgentDaemon : IAsyncDisposable
{
    private readonly LocalApi _api;
    private readonly WireGuardDevice? _device;
    private readonly MagicDns? _dns;
    private readonly LinuxTunnelLink? _link;
    private readonly SubnetRouter? _router;

    private AgentDaemon(ActorSystem system, IActorRef control, IActorRef? dataPlane, WireGuardDevice? device, MagicDns? dns, LocalApi api,
        LinuxTunnelLink? link, SubnetRouter? router)
    {
        _link = link;
        _router = router;
        System = system;
        Control = control;
        DataPlane = dataPlane;
        _device = device;
        _dns = dns;
        _api = api;
    }

    public ActorSystem System { get; }

    public IActorRef Control { get; }

    public IActorRef? DataPlane { get; }

    public int? ListenPort => _device?.ListenPort;

    /// <exception cref="AgentStateException">The state file is damaged.</exception>
    /// <exception cref="IOException">The TUN, the UDP port or the socket cannot be set up (not root, port taken).</exception>
    public static AgentDaemon Start(AgentDaemonOptions options, ILogger log)
    {
        var store = new FileAgentStateStore(options.StateDirectory);
        store.Load();
        WireGuardDevice? device = null;
        MagicDns? dns = null;
        LinuxTunnelLink? link = null;
        SubnetRouter? router = null;
        var system = AgentActorSystem.Create("weft-agent", "INFO");
        try
        {
            var control = new ControlClientOptions
            {
                Coordinators = options.Coordinators,
                StateStore = store,
                Hostname = options.Hostname,
                AuthKey = options.AuthKey,
                Tailnet = options.Tailnet,
                ForceReauth = options.ForceReauth,
                Endpoints = options.StaticEndpoints,
                AdvertisedRoutes = options.AdvertisedRoutes,
                NetMapCache = options.Tunnels ? new FileNetMapCache(options.StateDirectory) : null,
            };
            DataPlaneOptions? plane = null;
            if (options.Tunnels)
            {
                device = CreateDevice(options, log);
                device.Pinger = new TunnelPinger();
                link = new LinuxTunnelLink(options.TunName, options.Mtu);
                link.Up();
                if (!options.AdvertisedRoutes.IsEmpty) router = SubnetRouter.Start(options.TunName, options.SnatSubnetRoutes);
                dns = new MagicDns(options.DnsPort, log);
                plane = new DataPlaneOptions
                {
                    Device = device,
                    Link = link,
                    TunName = options.TunName,
                    StaticEndpoints = options.StaticEndpoints,
                    Dns = dns,
                    AcceptRoutes = options.AcceptRoutes,
                    ExitNode = options.ExitNode,
                };
            }
            var (controlClient, dataPlane) = AgentActors.Start(system, control, plane);
            device?.Start();
            var api = new LocalApi(options.StateDirectory, controlClient, dataPlane, device);
            return new AgentDaemon(system, controlClient, dataPlane, device, dns, api, link, router);
        }
        catch
        {
            system.Terminate().Wait(TimeSpan.FromSeconds(10));
            dns?.Dispose();
            link?.Dispose();
            router?.Dispose();
            device?.Dispose();
            throw;
        }
    }

    private static WireGuardDevice CreateDevice(AgentDaemonOptions options, ILogger log)
    {
        var tun = LinuxTun.Create(options.TunName, options.Mtu);
        try
        {
            return new WireGuardDevice(tun, UdpTransport.Bind(options.Port), EngineClock.System, WireGuardTimings.Default, log);
        }
        catch
        {
            tun.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _api.Dispose();
        await System.Terminate();
        _dns?.Dispose();
        _link?.Dispose(); // the routing rules; the routes go with the interface
        _router?.Dispose();
        _device?.Dispose(); // closing the TUN removes the interface, its addresses and routes
    }
}
