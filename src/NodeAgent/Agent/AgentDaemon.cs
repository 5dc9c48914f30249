using System.Collections.Immutable;
using Akka.Actor;
using Microsoft.Extensions.Logging;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Agent;

/// <summary>
/// How the daemon runs (<c>weft-agent daemon</c>'s flags, as <c>tailscaled</c>'s): where its state
/// is, its interface and ports. Where and as whom it joins are prefs, set with <c>up</c> (<see cref="AgentPrefs"/>).
/// </summary>
public sealed record AgentDaemonOptions
{
    public required string StateDirectory { get; init; }
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
    public bool SnatSubnetRoutes { get; init; } = true;
    /// <summary>Akka's log level for the agent's actors (DEBUG, INFO, WARNING, ERROR).</summary>
    public string ActorLogLevel { get; init; } = "INFO";
    /// <summary>Shorter backoff and answer timeouts for tests; null keeps the control client's defaults.</summary>
    public Func<ControlClientOptions, ControlClientOptions>? TuneControl { get; init; }
}

/// <summary>
/// The agent as a whole (<c>weft-agent daemon</c>, or <c>up --foreground</c>): an actor system with
/// the ControlClient and the DataPlane (which supervises the tunnels) under the
/// <see cref="AgentSupervisor"/>, the WireGuard engine on a real TUN, MagicDNS, and the local API the
/// CLI talks to. The engine and the TUN live here, outside the actors, so that an actor restart never
/// takes the interface down. The prefs (<c>prefs.json</c>) are the source of truth for where and how
/// it joins: each change is written before the actors are told, and a restarted daemon starts from them.
/// </summary>
public sealed class AgentDaemon : IAsyncDisposable
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(10);
    private readonly AgentDaemonOptions _options;
    private readonly ILogger _log;
    private readonly AgentPrefsFile _prefsFile;
    private readonly SemaphoreSlim _reconfiguring = new(1, 1);
    private readonly MagicDns? _dns;
    private readonly LinuxTunnelLink? _link;
    private SubnetRouter? _router;
    /// <summary>Checks every 10 s that the subnet router's masquerading is still in place (see <see cref="SubnetRouter.Reassert"/>).</summary>
    private readonly Timer _routerCheck;
    private LocalApi? _api;
    private AgentPrefs _prefs;

    private AgentDaemon(AgentDaemonOptions options, ILogger log, AgentPrefsFile prefsFile, AgentPrefs prefs, ActorSystem system, AgentActors actors,
        WireGuardDevice? device, MagicDns? dns, LinuxTunnelLink? link, SubnetRouter? router)
    {
        _options = options;
        _log = log;
        _prefsFile = prefsFile;
        _prefs = prefs;
        System = system;
        Control = actors.Control;
        DataPlane = actors.DataPlane;
        Stopped = actors.Supervisor.WatchAsync();
        Device = device;
        _dns = dns;
        _link = link;
        _router = router;
        _routerCheck = new Timer(_ => ReassertRouter(), null, RouterCheckInterval, RouterCheckInterval);
    }

    private static readonly TimeSpan RouterCheckInterval = TimeSpan.FromSeconds(10);

    private void ReassertRouter()
    {
        // Not while a reconfiguration (which may start or stop the router) runs: the next check comes soon enough.
        if (!_reconfiguring.Wait(0)) return;
        try
        {
            if (_router?.Reassert() == true)
                _log.LogWarning("Another program removed this subnet router's masquerading table (weft-{Interface}); put it back", _options.TunName);
        }
        catch (IOException e)
        {
            _log.LogWarning("Cannot check this subnet router's masquerading: {Error}", e.Message);
        }
        finally
        {
            _reconfiguring.Release();
        }
    }

    public ActorSystem System { get; }

    public IActorRef Control { get; }

    public IActorRef? DataPlane { get; }

    /// <summary>Completes if the agent's actors stop on their own: a service failed beyond its restart limit (see <see cref="AgentSupervisor"/>).</summary>
    public Task Stopped { get; }

    /// <summary>
    /// Completes, with the reason, if the TUN interface is deleted under the agent. The daemon cannot
    /// run on without it; started again, it creates the interface with its addresses, routes and rules.
    /// Never completes for an agent without tunnels.
    /// </summary>
    public Task<string> InterfaceGone => Device?.InterfaceGone ?? NeverGone;

    private static readonly Task<string> NeverGone = new TaskCompletionSource<string>().Task;

    public WireGuardDevice? Device { get; }

    public int? ListenPort => Device?.ListenPort;

    /// <summary>Waits (at most 35 s) until the system's resolver has been told the last change; <c>set --accept-dns</c> and <c>down</c> answer after it.</summary>
    public async Task DnsSettledAsync()
    {
        if (_dns is null) return;
        try
        {
            await _dns.Settled.WaitAsync(TimeSpan.FromSeconds(35));
        }
        catch (TimeoutException)
        {
            _log.LogWarning("The system's resolver is still being configured");
        }
    }

    /// <summary>Whether MagicDNS is (or is being made) the system's resolver.</summary>
    public bool DnsWantsSystem => _dns?.WantsSystem ?? false;

    /// <summary>MagicDNS and the system's resolver (<c>weft-agent dns status</c>), or why there is none.</summary>
    public object DnsStatus => _dns is { } dns ? dns.Status : new LocalApiError("no_tunnels", "this agent runs without tunnels (--no-tunnels): no MagicDNS");

    public string SocketPath => _api?.SocketPath ?? Path.Combine(_options.StateDirectory, LocalApi.SocketName);

    /// <summary>The prefs in force (the last ones written).</summary>
    public AgentPrefs Prefs => Volatile.Read(ref _prefs);

    /// <exception cref="AgentStateException">The state or prefs file is damaged.</exception>
    /// <exception cref="IOException">The TUN, the UDP port or the socket cannot be set up (not root, port taken, another agent runs).</exception>
    public static async Task<AgentDaemon> StartAsync(AgentDaemonOptions options, ILoggerFactory logs)
    {
        var log = logs.CreateLogger("weft-agent");
        var store = new FileAgentStateStore(options.StateDirectory);
        store.Load();
        var prefsFile = new AgentPrefsFile(options.StateDirectory);
        var prefs = prefsFile.Load();
        if (await LocalApi.AnswersAsync(options.StateDirectory))
            throw new IOException($"an agent already runs with state in {options.StateDirectory}: `weft-agent up` reconfigures it, `weft-agent down` takes it down");
        WireGuardDevice? device = null;
        MagicDns? dns = null;
        LinuxTunnelLink? link = null;
        SubnetRouter? router = null;
        var system = AgentActorSystem.CreateLoggingToSerilog("weft-agent", options.ActorLogLevel);
        AgentDaemon? daemon = null;
        try
        {
            var control = new ControlClientOptions
            {
                Coordinators = prefs.Coordinators,
                StateStore = store,
                Hostname = prefs.Hostname,
                Tailnet = prefs.Tailnet,
                Endpoints = options.StaticEndpoints,
                AdvertisedRoutes = prefs.AdvertisedRoutes,
                StartStopped = !prefs.WantRunning,
                NetMapCache = options.Tunnels ? new FileNetMapCache(options.StateDirectory) : null,
            };
            if (options.TuneControl is { } tune) control = tune(control);
            DataPlaneOptions? plane = null;
            if (options.Tunnels)
            {
                device = CreateDevice(options, log);
                device.Pinger = new TunnelPinger();
                link = new LinuxTunnelLink(options.TunName, options.Mtu);
                link.Up();
                if (!prefs.AdvertisedRoutes.IsEmpty) router = SubnetRouter.Start(options.TunName, options.SnatSubnetRoutes);
                dns = new MagicDns(options.DnsPort, log, Dns.SystemResolvers.Choose(Dns.ResolvConfFile.DefaultPath, options.TunName, options.StateDirectory, log));
                dns.SetAcceptDns(prefs.AcceptDns);
                plane = new DataPlaneOptions
                {
                    Device = device,
                    Link = link,
                    TunName = options.TunName,
                    StaticEndpoints = options.StaticEndpoints,
                    Dns = dns,
                    AcceptRoutes = prefs.AcceptRoutes,
                    ExitNode = prefs.ExitNode,
                };
            }
            var actors = AgentActors.Start(system, control, plane);
            device?.Start();
            daemon = new AgentDaemon(options, log, prefsFile, prefs, system, actors, device, dns, link, router);
            daemon._api = await LocalApi.StartAsync(options.StateDirectory, daemon);
            return daemon;
        }
        catch
        {
            await system.Terminate().WaitAsync(TimeSpan.FromSeconds(10));
            dns?.Dispose();
            link?.Dispose();
            router?.Dispose();
            device?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// <c>up</c> and <c>login</c> (<paramref name="connect"/>) and <c>set</c>: checks the change, writes
    /// the prefs, then tells the data plane and the control client. Returns the <see cref="AgentStatus"/>
    /// once the control client took it, or a <see cref="LocalApiError"/>.
    /// </summary>
    public async Task<object> ReconfigureAsync(PrefsChange change, bool connect)
    {
        if (change.Problems() is { Count: > 0 } problems) return new LocalApiError("invalid_prefs", string.Join("; ", problems));
        await _reconfiguring.WaitAsync();
        try
        {
            var prefs = Prefs.With(change);
            if (connect && prefs.LoginServers.IsEmpty)
                return new LocalApiError("needs_login_server", "this agent has never logged in: give --login-server <coordinator URL>, and --auth-key (or --tailnet to wait for an admin's approval)");
            if (connect) prefs = prefs with { WantRunning = true };
            _prefsFile.Save(prefs);
            Volatile.Write(ref _prefs, prefs);
            UpdateRouter(prefs);
            _dns?.SetAcceptDns(prefs.AcceptDns);
            await DnsSettledAsync();
            DataPlane?.Tell(new RoutingPrefs(prefs.AcceptRoutes, prefs.ExitNode));
            var login = new ControlLogin(prefs.Coordinators, prefs.Hostname, prefs.Tailnet, change.AuthKey, change.ForceReauth, prefs.AdvertisedRoutes);
            return await Control.Ask<AgentStatus>(new LogIn(login, connect), AskTimeout);
        }
        finally
        {
            _reconfiguring.Release();
        }
    }

    /// <summary><c>down</c>: no stream and no tunnels until <c>up</c>, and a restarted daemon stays down.</summary>
    public void Down()
    {
        SaveWantRunning(false);
        Control.Tell(TakeDown.Instance);
    }

    /// <summary><c>logout</c>: the coordinator expires the device and the agent forgets it; a restarted daemon waits for <c>login</c>.</summary>
    public async Task<LogoutResult> LogOutAsync()
    {
        var result = await Control.Ask<LogoutResult>(LogOut.Instance, AskTimeout + AskTimeout);
        SaveWantRunning(false);
        return result;
    }

    private void SaveWantRunning(bool running)
    {
        _reconfiguring.Wait();
        try
        {
            var prefs = Prefs with { WantRunning = running };
            _prefsFile.Save(prefs);
            Volatile.Write(ref _prefs, prefs);
        }
        finally
        {
            _reconfiguring.Release();
        }
    }

    /// <summary>The forwarding rules a subnet router or exit node needs: set up with the first advertised route, removed with the last.</summary>
    private void UpdateRouter(AgentPrefs prefs)
    {
        if (!_options.Tunnels) return;
        try
        {
            if (!prefs.AdvertisedRoutes.IsEmpty && _router is null) _router = SubnetRouter.Start(_options.TunName, _options.SnatSubnetRoutes);
            else if (prefs.AdvertisedRoutes.IsEmpty && _router is not null)
            {
                _router.Dispose();
                _router = null;
            }
        }
        catch (IOException e)
        {
            _log.LogError("Cannot set up forwarding for the advertised routes: {Problem}", e.Message);
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
        await _routerCheck.DisposeAsync();
        if (_api is not null) await _api.DisposeAsync();
        await System.Terminate();
        _dns?.Dispose();
        _link?.Dispose(); // the routing rules; the routes go with the interface
        _router?.Dispose();
        Device?.Dispose(); // closing the TUN removes the interface, its addresses and routes
        _reconfiguring.Dispose();
    }
}
