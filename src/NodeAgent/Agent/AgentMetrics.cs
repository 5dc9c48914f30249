using System.Diagnostics.Metrics;
using Akka.Actor;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Tunnels;

namespace Weft.NodeAgent.Agent;

/// <summary>
/// The agent's own metrics (meter <c>Weft.Agent</c>), served by its local API at
/// <c>/localapi/v0/metrics</c> as Prometheus text: per peer, the path in use, bytes each way and
/// handshakes; and the control connection's state. Read from the control client and the data plane
/// when scraped (at most once a second however many instruments ask).
/// </summary>
public sealed class AgentMetrics : IDisposable
{
    public const string MeterName = "Weft.Agent";
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan Freshness = TimeSpan.FromSeconds(1);

    private readonly Meter _meter = new(MeterName);
    private readonly AgentDaemon _daemon;
    private readonly object _gate = new();
    private (DateTimeOffset At, Snapshot Value)? _last;

    public AgentMetrics(AgentDaemon daemon)
    {
        _daemon = daemon;
        _meter.CreateObservableCounter("weft.agent.peer.received", () => Peers(t => t.RxBytes), "By", "Bytes received from each peer through its tunnel");
        _meter.CreateObservableCounter("weft.agent.peer.sent", () => Peers(t => t.TxBytes), "By", "Bytes sent to each peer through its tunnel");
        _meter.CreateObservableCounter("weft.agent.peer.handshakes", () => Peers(t => t.Handshakes), "{handshake}", "WireGuard handshakes completed with each peer");
        _meter.CreateObservableGauge("weft.agent.peer.last_handshake", () => Peers(t => t.LastHandshake?.ToUnixTimeSeconds() ?? 0), "s",
            "Unix time of the last handshake with each peer (0: none yet)");
        _meter.CreateObservableGauge("weft.agent.peers", () => Read().Peers
            .GroupBy(p => p.Tunnel?.Path ?? "none")
            .Select(g => new Measurement<int>(g.Count(), new KeyValuePair<string, object?>("path", g.Key))),
            "{peer}", "Peers in the netmap, by the path their traffic takes (direct, relay, none)");
        _meter.CreateObservableGauge("weft.agent.control.connected", () => Read().State == ControlState.Running ? 1 : 0, "",
            "1 while the agent is logged in and its control stream is up");
    }

    private IEnumerable<Measurement<long>> Peers(Func<TunnelStats, long> value) =>
        Read().Peers.Where(p => p.Tunnel is not null).Select(p => new Measurement<long>(value(p.Tunnel!),
            new KeyValuePair<string, object?>("peer", p.Name),
            new KeyValuePair<string, object?>("node_key", p.NodeKey),
            new KeyValuePair<string, object?>("path", p.Tunnel!.Path)));

    /// <summary>The agent's state and each peer with its tunnel; asked of the actors (off their threads: a scrape runs on Kestrel's).</summary>
    private Snapshot Read()
    {
        lock (_gate)
        {
            if (_last is { } last && DateTimeOffset.UtcNow - last.At < Freshness) return last.Value;
            var snapshot = Ask();
            _last = (DateTimeOffset.UtcNow, snapshot);
            return snapshot;
        }
    }

    private Snapshot Ask()
    {
        try
        {
            var status = _daemon.Control.Ask<AgentStatus>(GetAgentStatus.Instance, AskTimeout).GetAwaiter().GetResult();
            if (_daemon.DataPlane is { } plane)
                status = status.WithTunnels(plane.Ask<TunnelStatsReply>(GetTunnelStats.Instance, AskTimeout).GetAwaiter().GetResult().Tunnels);
            return new Snapshot(status.State, status.Peers);
        }
        catch (AskTimeoutException)
        {
            return new Snapshot(ControlState.Connecting, []);
        }
    }

    public void Dispose() => _meter.Dispose();

    private sealed record Snapshot(ControlState State, IReadOnlyList<PeerStatus> Peers);
}
