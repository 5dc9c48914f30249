using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Event;
using Weft.Contracts.Control;
using Weft.Contracts.Stun;
using Weft.NodeAgent.Agent;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Paths;

/// <summary>Where the machine's own addresses come from (interfaces and command-line endpoints).</summary>
public sealed record LocalAddressSource(string? TunName, ImmutableArray<string> StaticEndpoints, bool DiscoverInterfaces, TimeSpan RefreshInterval)
{
    /// <summary>Reads the machine's interfaces (tests stand in for the machine); by default the operating system's, the TUN left out.</summary>
    public Func<IReadOnlyList<Agent.MachineInterface>>? ReadInterfaces { get; init; }
}

/// <summary>
/// Netcheck: finds this agent's endpoints and its home region. STUN binding requests go to every
/// region's STUN servers from the tunnel's own socket (so the mapping found is the one peers will
/// see), three tries each, 100 ms apart; the answers give each region's latency and the addresses
/// the NAT maps us to. Two servers seeing two different ports mean a NAT that maps per destination
/// ("hard"). The home region is the fastest, with stickiness (Tailscale's rule: keep the old home
/// unless the best is 10 ms better and under two thirds of it), and never an <c>avoid</c> region.
/// <para>
/// Runs again every 20–26 s (which also keeps the NAT mapping alive), when the machine's addresses
/// change (roaming), and on demand. It keeps no state that matters across a restart: a restarted
/// discovery probes again at once.
/// </para>
/// </summary>
public sealed class EndpointDiscovery : UntypedActor, IWithTimers
{
    private static readonly TimeSpan ReportAfter = TimeSpan.FromMilliseconds(1500);
    private const int Tries = 3;

    private readonly WireGuardDevice _device;
    private readonly LocalAddressSource _local;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private RelayMap? _map;
    private string _controlHost = "";
    private int _home;
    private ImmutableArray<string> _localEndpoints = [];
    private ImmutableArray<string> _attachment = [];
    private NetcheckReport? _last;
    private Probe? _probe;
    private readonly List<IActorRef> _waiting = [];

    public EndpointDiscovery(WireGuardDevice device, LocalAddressSource local)
    {
        _device = device;
        _local = local;
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props PropsFor(WireGuardDevice device, LocalAddressSource local) => Props.Create(() => new EndpointDiscovery(device, local));

    /// <summary>One netcheck in flight: its requests by transaction id, and what came back.</summary>
    private sealed class Probe(int id)
    {
        public int Id { get; } = id;
        public readonly Dictionary<string, (int Region, IPEndPoint Server, long SentAt)> Requests = new();
        public readonly Dictionary<int, double> Latency = new();
        public readonly Dictionary<IPEndPoint, IPEndPoint> MappedByServer = new();
        public ImmutableArray<(int Region, IPEndPoint Server)> Targets = [];
        public int TriesSent;
    }

    private sealed record Resolved(int ProbeId, ImmutableArray<(int Region, IPEndPoint Server)> Targets);

    private sealed record SendTry(int ProbeId);

    private sealed record Finish(int ProbeId);

    private sealed class Restun
    {
        public static readonly Restun Instance = new();
    }

    private sealed class RefreshLocal
    {
        public static readonly RefreshLocal Instance = new();
    }

    private sealed class FirstReport
    {
        public static readonly FirstReport Instance = new();
    }

    protected override void PreStart()
    {
        // Learned here, not on the first timer tick: a probe that answers within that tick would otherwise
        // report (and publish) no local endpoints.
        (_localEndpoints, _attachment) = CurrentLocal();
        Timers.StartPeriodicTimer("local", RefreshLocal.Instance, _local.RefreshInterval);
        // The relay map usually comes within a moment of connecting, and then the netcheck reports; without
        // one (no relays) the local endpoints are reported after this wait.
        Timers.StartSingleTimer("first-report", FirstReport.Instance, TimeSpan.FromSeconds(2));
        // After a restart the map and the home region are with the PathManager: ask for them.
        Context.Parent.Tell(NetcheckStarted.Instance);
    }

    /// <summary>
    /// Stopping or restarting mid-probe: whoever asked for a netcheck (<c>weft-agent netcheck</c>) is answered
    /// with the last report (or the local endpoints alone), not left to time out. The probe's result comes to
    /// the next incarnation, which did not start it and sends it to no one.
    /// </summary>
    protected override void PostStop()
    {
        var answer = _last ?? new NetcheckReport(false, null, [], [], 0, [.. _localEndpoints.IsDefault ? [] : _localEndpoints], DateTimeOffset.UtcNow);
        foreach (var waiting in _waiting) waiting.Tell(answer);
        _waiting.Clear();
    }

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case HomeHint hint:
                if (_home == 0) _home = hint.RegionId;
                break;
            case FirstReport:
                if (_last is null && _probe is null) Publish(false);
                break;
            case RelayMapKnown known:
                Timers.Cancel("first-report");
                var first = _map is null;
                _map = known.Map;
                _controlHost = known.ControlHost;
                if (first) StartProbe();
                break;
            case GetNetcheck when _map is null:
                Sender.Tell(new NetcheckReport(false, null, [], [], 0, [.. CurrentLocalEndpoints()], DateTimeOffset.UtcNow));
                break;
            case GetNetcheck:
                _waiting.Add(Sender);
                StartProbe();
                break;
            case RefreshLocal:
                OnRefreshLocal();
                break;
            case Restun:
                StartProbe();
                break;
            case Resolved resolved when _probe?.Id == resolved.ProbeId:
                _probe.Targets = resolved.Targets;
                Self.Tell(new SendTry(resolved.ProbeId));
                Timers.StartSingleTimer("finish", new Finish(resolved.ProbeId), ReportAfter);
                break;
            case SendTry send when _probe?.Id == send.ProbeId:
                SendRequests(_probe);
                if (++_probe.TriesSent < Tries) Timers.StartSingleTimer("try", new SendTry(send.ProbeId), TimeSpan.FromMilliseconds(100));
                break;
            case StunArrived stun:
                OnStun(stun);
                break;
            case Finish finish when _probe?.Id == finish.ProbeId:
                Complete(_probe);
                break;
            case Resolved or SendTry or Finish:
                break; // from an earlier probe
            default:
                Unhandled(message);
                break;
        }
    }

    private ImmutableArray<string> CurrentLocalEndpoints() => CurrentLocal().Endpoints;

    private (ImmutableArray<string> Endpoints, ImmutableArray<string> Attachment) CurrentLocal()
    {
        if (!_local.DiscoverInterfaces) return (_local.StaticEndpoints, []);
        var interfaces = _local.ReadInterfaces?.Invoke() ?? LocalEndpoints.ReadInterfaces(_local.TunName);
        return (LocalEndpoints.Discover(_device.ListenPort, interfaces, _local.StaticEndpoints), LocalEndpoints.Attachment(interfaces));
    }

    /// <summary>
    /// The machine's addresses, looked at again. A roam (<see cref="OwnEndpointsChanged.Roamed"/>: relay
    /// connections, the control stream and every path start over) is a change of the network the default
    /// route goes through (<see cref="LocalEndpoints.Attachment"/>); an address that came or went on another
    /// interface (a container bridge on a Docker host, many times a day) is only probed and published. With
    /// no default route to judge by (a test namespace), any change is a roam, as it was before.
    /// </summary>
    private void OnRefreshLocal()
    {
        var (local, attachment) = CurrentLocal();
        var changed = !local.SequenceEqual(_localEndpoints);
        var moved = !attachment.SequenceEqual(_attachment);
        var woke = Woke();
        if (!changed && !moved && !woke) return;
        var first = _localEndpoints.IsDefaultOrEmpty;
        var roamed = moved || woke || (changed && !first && attachment.IsEmpty && _attachment.IsEmpty);
        _localEndpoints = local;
        _attachment = attachment;
        if (roamed && !woke) _log.Info("The machine moved to another network ({0}): probing again", string.Join(", ", attachment.IsEmpty ? local : attachment));
        else if (!first) _log.Debug("The machine's addresses changed ({0}); the same network", string.Join(", ", local));
        if (_map is not null) StartProbe(roamed);
        else if (!first) Publish(roamed);
        // else: the first report waits for the relay map (or FirstReport)
    }

    /// <summary>A sleep at least this long between two looks counts (its NAT mappings and TCP connections may be gone).</summary>
    public static readonly TimeSpan SleepThreshold = TimeSpan.FromSeconds(30);

    // How long the machine had slept since boot at the last look (EngineClock.SleptMs).
    private long? _sleptAtLastLook;

    /// <summary>
    /// Whether the machine slept since the last look (a laptop resumed). Then its NAT mappings are gone and
    /// its TCP connections (relays, the coordinator's stream) are dead without knowing it, as after a move to
    /// another network: it counts as a roam. Its tunnels hear it too (<see cref="Tunnels.MachineSlept"/>).
    /// </summary>
    private bool Woke()
    {
        var sleptMs = _device.Clock.SleptMs;
        var before = _sleptAtLastLook;
        _sleptAtLastLook = sleptMs;
        if (before is not { } last) return false;
        var slept = TimeSpan.FromMilliseconds(sleptMs - last);
        if (slept < SleepThreshold) return false;
        _log.Info("The machine slept for about {0:0} s: probing again, and reconnecting", slept.TotalSeconds);
        Context.Parent.Tell(new Tunnels.MachineSlept(slept));
        return true;
    }

    // From a random start: a previous incarnation's probe (its answers still on the way) is not taken for this one's.
    private int _probeIds = Random.Shared.Next();
    private bool _roamedPending;
    private bool _reprobe;
    private bool _publishHeld;

    private void StartProbe(bool roamed = false)
    {
        _roamedPending |= roamed;
        if (_map is null)
        {
            Publish(_roamedPending);
            return;
        }
        if (_probe is not null)
        {
            // One at a time; its report answers everyone waiting. A move during it makes its answers stale: probe again after it.
            _reprobe |= roamed;
            return;
        }
        var probe = new Probe(++_probeIds);
        _probe = probe;
        var map = _map;
        var controlHost = _controlHost;
        ResolveTargets(map, controlHost).PipeTo(Self, success: targets => new Resolved(probe.Id, targets), failure: _ => new Resolved(probe.Id, []));
    }

    /// <summary>Host names are resolved off the mailbox (DNS can take seconds).</summary>
    private static async Task<ImmutableArray<(int Region, IPEndPoint Server)>> ResolveTargets(RelayMap map, string controlHost)
    {
        var targets = ImmutableArray.CreateBuilder<(int, IPEndPoint)>();
        foreach (var region in map.Regions)
        {
            foreach (var node in region.Nodes)
            {
                if (node.StunPort <= 0) continue;
                var host = node.Host.Length > 0 ? node.Host : controlHost;
                IPAddress? address = IPAddress.TryParse(host, out var literal) ? literal : null;
                if (address is null)
                {
                    try { address = (await System.Net.Dns.GetHostAddressesAsync(host)).FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork); }
                    catch (SocketException) { }
                }
                if (address is null || IPAddress.IsLoopback(address) && !IsLoopbackHost(controlHost)) continue;
                targets.Add((region.Id, new IPEndPoint(address, node.StunPort)));
            }
        }
        return targets.ToImmutable();
    }

    private static bool IsLoopbackHost(string host) => host == "localhost" || IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip);

    private void SendRequests(Probe probe)
    {
        foreach (var (region, server) in probe.Targets)
        {
            var transaction = StunMessage.NewTransactionId();
            probe.Requests[Convert.ToHexString(transaction)] = (region, server, _device.Clock.NowMs);
            _device.SendDatagram(new Endpoint(server), StunMessage.BindingRequestFor(transaction));
        }
    }

    private void OnStun(StunArrived stun)
    {
        if (_probe is not { } probe || stun.Packet.Length < StunMessage.HeaderLength) return;
        var transaction = Convert.ToHexString(stun.Packet, 8, StunMessage.TransactionIdLength);
        if (!probe.Requests.Remove(transaction, out var request)) return;
        if (StunMessage.TryReadBindingResponse(stun.Packet, default, out var mapped) != StunError.None) return;
        var latency = Math.Max(0, stun.AtMs - request.SentAt);
        probe.Latency[request.Region] = Math.Min(probe.Latency.GetValueOrDefault(request.Region, double.MaxValue), latency);
        probe.MappedByServer[request.Server] = mapped;
        // Every server has answered: no need to wait out the rest of the window.
        if (probe.Targets.All(t => probe.MappedByServer.ContainsKey(t.Server))) Complete(probe);
    }

    private void Complete(Probe probe)
    {
        _probe = null;
        Timers.Cancel("try");
        var mapped = probe.MappedByServer.Values.Distinct().ToList();
        bool? varies = probe.MappedByServer.Count >= 2 ? mapped.Count > 1 : null;
        _home = ChooseHome(probe.Latency);
        var regions = _map!.Regions.Select(r => new RegionProbe(r.Id, r.Code, probe.Latency.TryGetValue(r.Id, out var l) ? l : null,
            probe.MappedByServer.Where(m => probe.Targets.Any(t => t.Region == r.Id && t.Server.Equals(m.Key))).Select(m => m.Value.ToString()).FirstOrDefault())).ToList();
        _last = new NetcheckReport(probe.Latency.Count > 0, varies, [.. mapped.Select(m => m.ToString())], regions, _home, [.. _localEndpoints], DateTimeOffset.UtcNow);
        foreach (var waiting in _waiting) waiting.Tell(_last);
        _waiting.Clear();
        var moved = _reprobe;
        _reprobe = false;
        if (moved && !_publishHeld)
        {
            // The machine moved during this probe: its answers are from before the move. Not published: the next
            // probe's are, as the roam (published now and then again, one move reconnected everything twice).
            // Held once only, so that a machine that keeps moving still publishes.
            _publishHeld = true;
            StartProbe(roamed: true);
            return;
        }
        _publishHeld = false;
        Publish(_roamedPending);
        if (moved)
        {
            StartProbe(roamed: true);
            return;
        }
        Timers.StartSingleTimer("restun", Restun.Instance, TimeSpan.FromMilliseconds(Random.Shared.Next(20_000, 26_000)));
    }

    /// <summary>The fastest region, sticky: the old home stays while it answers and the best is not clearly better (Tailscale's netcheck rule).</summary>
    private int ChooseHome(Dictionary<int, double> latency)
    {
        var candidates = _map!.Regions.Where(r => !r.Avoid && latency.ContainsKey(r.Id)).Select(r => (r.Id, Latency: latency[r.Id])).ToList();
        if (candidates.Count == 0)
        {
            // No STUN answer (UDP blocked): keep the home, else the first region that may be one.
            if (_home != 0 && _map.Regions.Any(r => r.Id == _home)) return _home;
            return _map.Regions.Where(r => !r.Avoid).Select(r => r.Id).DefaultIfEmpty(_map.Regions.Select(r => r.Id).FirstOrDefault()).First();
        }
        var best = candidates.MinBy(c => c.Latency);
        if (_home != 0 && latency.TryGetValue(_home, out var old) && _map.Regions.Any(r => r.Id == _home && !r.Avoid))
        {
            if (old - best.Latency < 10 || best.Latency > old * 2 / 3) return _home;
        }
        return best.Id;
    }

    private void Publish(bool roamed)
    {
        _roamedPending = false;
        var endpoints = ImmutableArray.CreateBuilder<IPEndPoint>();
        foreach (var text in _localEndpoints.IsDefault ? [] : _localEndpoints)
            if (IPEndPoint.TryParse(text, out var parsed)) endpoints.Add(parsed);
        if (_last is { } report)
            foreach (var text in report.StunAddresses)
                if (IPEndPoint.TryParse(text, out var parsed) && !endpoints.Contains(parsed)) endpoints.Add(parsed);
        var current = _last ?? new NetcheckReport(false, null, [], [], _home, [.. _localEndpoints], DateTimeOffset.UtcNow);
        Context.Parent.Tell(new NetcheckDone(current with { HomeRegion = _home }, endpoints.ToImmutable()));
        if (roamed) Context.Parent.Tell(new OwnEndpointsChanged(endpoints.ToImmutable(), Roamed: true));
    }
}
