using System.Collections.Immutable;
using System.Net;
using Microsoft.Extensions.Logging;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Dns;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Agent;

/// <summary>
/// MagicDNS on the agent: a <see cref="MagicDnsServer"/> on the device's own tailnet addresses,
/// answering <c>&lt;host&gt;.&lt;tailnet suffix&gt;</c> for itself and every peer in its netmap. It
/// moves when the addresses change, and its names follow every netmap. With a
/// <see cref="ISystemResolver"/> (and <c>--accept-dns</c>, the default) it is also the system's
/// resolver while the tunnels are up: short names through the search domain, everything else
/// forwarded to the resolvers the system had; <c>down</c>, logout and exit put the system back.
/// </summary>
public sealed class MagicDns(int port, ILogger log, ISystemResolver? system = null) : IDisposable
{
    private readonly object _gate = new();
    private MagicDnsServer? _server;
    private ImmutableArray<IpPrefix> _boundTo = [];
    private NetMapView? _view;
    private bool _acceptDns = true;
    // The system's resolver is told off the caller's thread (the DataPlane's mailbox; resolvectl may
    // take seconds), one change after another: what was last asked for, for which server, and the work.
    private (IPAddress Nameserver, string Suffix)? _wanted;
    private MagicDnsServer? _wantedFor;
    private Task _systemWork = Task.CompletedTask;

    public IReadOnlyList<IPEndPoint> Endpoints => _server?.LocalEndpoints ?? [];

    /// <summary>What <c>weft-agent dns status</c> shows.</summary>
    public MagicDnsStatus Status
    {
        get
        {
            lock (_gate)
            {
                return new MagicDnsStatus([.. Endpoints.Select(e => e.ToString())], _view is null ? null : SuffixOf(_view), _acceptDns,
                    system?.Status ?? new SystemDnsStatus("off", ResolvConfFile.DefaultPath, null, [], [], null, "this agent does not manage the system's resolver"),
                    _server?.Forwarded ?? 0);
            }
        }
    }

    /// <summary>Completes once the system's resolver has been told the last change asked of it.</summary>
    public Task Settled
    {
        get { lock (_gate) return _systemWork; }
    }

    /// <summary>Whether the system's resolver is (or is being) pointed here.</summary>
    public bool WantsSystem
    {
        get { lock (_gate) return _wanted is not null; }
    }

    /// <summary><c>--accept-dns</c>: whether MagicDNS becomes the system's resolver (true) or only answers when asked directly.</summary>
    public void SetAcceptDns(bool accept)
    {
        lock (_gate)
        {
            if (accept == _acceptDns) return;
            _acceptDns = accept;
            ConfigureSystem();
        }
    }

    /// <summary>Follows a netmap (null: the tunnels are down, so no names are served).</summary>
    public void Update(NetMapView? view, ImmutableArray<IpPrefix> addresses)
    {
        lock (_gate)
        {
            if (!addresses.SequenceEqual(_boundTo)) Rebind(addresses);
            _view = view;
            if (_server is { } server)
            {
                try
                {
                    server.Names = view is null ? DnsNameTable.Empty : NamesOf(view);
                }
                catch (ArgumentException e)
                {
                    // A name the table refuses (a duplicate, a name outside the zone): keep answering with the previous names.
                    log.LogWarning("MagicDNS keeps its previous names: {Reason}", e.Message);
                }
            }
            ConfigureSystem();
        }
    }

    /// <summary>
    /// The system's resolver points here while there is a netmap with a suffix, an IPv4 tailnet
    /// address to answer on, port 53 (the only port resolv.conf can name) and --accept-dns.
    /// </summary>
    private void ConfigureSystem()
    {
        if (system is null) return;
        var nameserver = _server?.LocalEndpoints.FirstOrDefault(e => e.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)?.Address;
        (IPAddress Nameserver, string Suffix)? wanted =
            _acceptDns && _view is { } view && SuffixOf(view) is { } suffix && nameserver is not null && port == 53 ? (nameserver, suffix) : null;
        if (Equals(wanted, _wanted) && ReferenceEquals(_server, _wantedFor)) return; // every netmap: told only of changes
        (_wanted, _wantedFor) = (wanted, _server);
        var server = _server;
        _systemWork = _systemWork.ContinueWith(_ =>
        {
            try
            {
                if (wanted is { } target) system.Apply(target.Nameserver, target.Suffix);
                else system.Restore();
                if (server is not null) server.Upstreams = wanted is null ? [] : system.Upstreams;
            }
            catch (Exception e)
            {
                log.LogError(e, "MagicDNS could not configure the system's resolver");
            }
        }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
    }

    /// <summary>
    /// Has the system's resolver checked, off the caller's thread and after any change still being told:
    /// another program may have undone it since (<see cref="ISystemResolver.Recheck"/>). Nothing while
    /// MagicDNS is not the system's resolver.
    /// </summary>
    public void Recheck()
    {
        if (system is null) return;
        lock (_gate)
        {
            if (_wanted is null) return;
            var server = _server;
            _systemWork = _systemWork.ContinueWith(_ =>
            {
                try
                {
                    system.Recheck();
                    if (server is not null) server.Upstreams = system.Upstreams;
                }
                catch (Exception e)
                {
                    log.LogError(e, "MagicDNS could not check the system's resolver");
                }
            }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        }
    }

    private static string? SuffixOf(NetMapView view) =>
        view.Dns?.Suffix is { Length: > 0 } configured ? configured.TrimEnd('.')
        : view.Self?.Fqdn is { } fqdn && fqdn.TrimEnd('.').IndexOf('.') is var dot and > 0 ? fqdn.TrimEnd('.')[(dot + 1)..] : null;

    /// <summary>Every device of the netmap under its FQDN (self included), and the tailnet suffix as the zone we answer for.</summary>
    public static DnsNameTable NamesOf(NetMapView view)
    {
        var records = new List<DnsHost>();
        foreach (var node in view.Peers.Values.Append(view.Self).OfType<Weft.Contracts.Control.Node>())
        {
            if (string.IsNullOrEmpty(node.Fqdn)) continue;
            records.Add(new DnsHost(node.Fqdn, [.. NodeAddresses.Of(node)]));
        }
        var suffix = SuffixOf(view);
        return new DnsNameTable(records, suffix is null ? [] : [suffix]);
    }

    private void Rebind(ImmutableArray<IpPrefix> addresses)
    {
        var names = _server?.Names;
        _server?.Dispose();
        _server = null;
        _boundTo = addresses;
        if (addresses.IsEmpty) return;
        try
        {
            _server = new MagicDnsServer(addresses.Select(a => new IPEndPoint(a.Address, port)).ToList(), names ?? DnsNameTable.Empty);
            log.LogInformation("MagicDNS answers on {Endpoints}", string.Join(", ", _server.LocalEndpoints));
        }
        catch (System.Net.Sockets.SocketException e)
        {
            log.LogWarning("MagicDNS cannot listen on port {Port} of the tailnet addresses: {Error}", port, e.Message);
        }
    }

    public void Dispose()
    {
        Task work;
        lock (_gate) work = _systemWork;
        work.Wait(TimeSpan.FromSeconds(35)); // resolvectl's calls are bounded at 10 s each
        lock (_gate)
        {
            system?.Restore();
            _server?.Dispose();
        }
    }
}

/// <summary>MagicDNS as <c>weft-agent dns status</c> shows it: where it answers, for which suffix, and what the system was told.</summary>
public sealed record MagicDnsStatus(IReadOnlyList<string> ListeningOn, string? Suffix, bool AcceptDns, SystemDnsStatus System, long Forwarded);
