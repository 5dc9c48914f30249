using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Weft.Cluster.Telemetry;

/// <summary>
/// The coordinator's instruments (meter <c>Weft.Coordinator</c>), exported at <c>/metrics</c> with the
/// relay's (<c>Weft.Relay</c>) and ASP.NET Core's (admin API requests by route and status, as
/// <c>http_server_request_duration_seconds</c>). Every node exports its own: sum over nodes for the cluster.
/// The names here are OpenTelemetry's; Prometheus sees dots as underscores, the unit as a suffix, and
/// counters with <c>_total</c> (README, Metrics).
/// </summary>
public static class CoordinatorMetrics
{
    public const string MeterName = "Weft.Coordinator";

    private static readonly Meter Meter = new(MeterName);

    /// <summary>Bucket bounds for durations in seconds, from 1 ms to 10 s (the exporter's default bounds assume milliseconds).</summary>
    private static readonly InstrumentAdvice<double> Seconds = new()
    {
        HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    };

    /// <summary>Agents whose control session is registered on this node, by tailnet.</summary>
    public static readonly UpDownCounter<long> AgentsConnected = Meter.CreateUpDownCounter<long>("weft.agents.connected", "{agent}",
        "Agents with a registered control session on this node, by tailnet");

    /// <summary>Netmap messages (deltas, and the full maps that start or resume a stream) written to agents' streams.</summary>
    public static readonly Counter<long> NetmapDeltasSent = Meter.CreateCounter<long>("weft.netmap.deltas.sent", "{delta}",
        "Netmap deltas (and full maps) written to agents' control streams on this node");

    public static readonly Counter<long> NetmapDeltaBytes = Meter.CreateCounter<long>("weft.netmap.delta.bytes", "By",
        "Bytes of the netmap messages written to agents' control streams, before sealing");

    /// <summary>
    /// Weft's messages to other nodes, by type (their wire name), as serialized for the wire. They share each
    /// pair of nodes' one connection with the cluster's heartbeats, so a burst here delays those.
    /// </summary>
    public static readonly Counter<long> ClusterMessagesSent = Meter.CreateCounter<long>("weft.cluster.messages.sent", "{message}",
        "Weft's messages serialized for another node, by type");

    public static readonly Counter<long> ClusterMessageBytes = Meter.CreateCounter<long>("weft.cluster.message.bytes", "By",
        "Bytes of Weft's messages serialized for another node, by type");

    public static KeyValuePair<string, object?> MessageType(string wireName) => new("type", wireName);

    /// <summary>From the request to store an entity's events to the journal's acknowledgement, by entity type.</summary>
    public static readonly Histogram<double> JournalWriteDuration = Meter.CreateHistogram<double>("weft.journal.write.duration", "s",
        "Time from asking the journal to store an entity's events to its acknowledgement, by entity type", advice: Seconds);

    public static readonly Counter<long> EntitiesStarted = Meter.CreateCounter<long>("weft.entities.started", "{entity}",
        "Entities started (recovered from the journal) on this node, by type");

    public static readonly Counter<long> EntitiesStopped = Meter.CreateCounter<long>("weft.entities.stopped", "{entity}",
        "Entities stopped on this node, by type: passivated when idle, handed off to another node, or stopped after a storage failure");

    /// <summary>
    /// A device's session that lost the stream to another session of the same device: <c>replaced</c>, the
    /// attached one when the agent reconnected; <c>late</c>, one whose stream opened before the attached
    /// one's, re-attaching after a failover held it up (it ends, and the agent's own session keeps the stream).
    /// </summary>
    public static readonly Counter<long> SessionsSuperseded = Meter.CreateCounter<long>("weft.device.sessions.superseded", "{session}",
        "Device sessions that lost the stream to another session of the same device, by outcome: replaced by a newer stream, or a late attach of an older one refused");

    public static readonly KeyValuePair<string, object?> Replaced = new("outcome", "replaced");

    /// <summary>
    /// A device entity's request for a full netmap at its tailnet: <c>built</c>, a map built and sent;
    /// <c>repeat</c>, a repeated request whose answer was already on its way (a busy tailnet gets a
    /// request and its repeats together), not built again.
    /// </summary>
    public static readonly Counter<long> FullMapRequests = Meter.CreateCounter<long>("weft.netmap.full_map_requests", "{request}",
        "Requests for a device's full netmap at its tailnet, by outcome: built and sent, or a repeat of one already answered");

    public static readonly KeyValuePair<string, object?> Built = new("outcome", "built");

    /// <summary>
    /// Messages from a tailnet to a device's entity found lost on the way (see <see cref="Devices.FanOutStamp"/>), by
    /// who saw it: <c>entity</c>, a later message showed the gap; <c>heartbeat</c>, the entity's heartbeat said it
    /// heard less than was sent. Each starts the device again from a full map. Any count here is worth a look at the
    /// links between the nodes.
    /// </summary>
    public static readonly Counter<long> FanOutGaps = Meter.CreateCounter<long>("weft.netmap.fanout_gaps", "{gap}",
        "Messages from a tailnet to a device's entity found lost on the way, by who saw it; each starts the device again from a full map");

    public static readonly KeyValuePair<string, object?> SeenByEntity = new("seen_by", "entity");

    public static readonly KeyValuePair<string, object?> SeenByHeartbeat = new("seen_by", "heartbeat");

    public static readonly KeyValuePair<string, object?> Repeat = new("outcome", "repeat");

    public static readonly KeyValuePair<string, object?> Late = new("outcome", "late");

    /// <summary>
    /// One step of a device's registration, from its first ask to the answer (retries of an entity that
    /// did not answer included), by step. A join storm that is slow shows here which entity it waits for.
    /// </summary>
    public static readonly Histogram<double> RegistrationStepDuration = Meter.CreateHistogram<double>("weft.registration.step.duration", "s",
        "Time one step of a device's registration took on this node, by step: machine_lookup, machine_release, device_check, tailnet_find, tailnet_register, tailnet_resume (a reconnect that named its device), machine_bind, device_init", advice: Seconds);

    /// <summary>Registrations this node answered, by result: <c>authorized</c>, <c>pending</c>, or the refusal's code.</summary>
    public static readonly Counter<long> Registrations = Meter.CreateCounter<long>("weft.registrations", "{registration}",
        "Device registrations this node answered, by result: authorized, pending (approval or sign-in), or the refusal's code (for example rate_limited)");

    public static readonly Histogram<double> PolicyCompileDuration = Meter.CreateHistogram<double>("weft.policy.compile.duration", "s",
        "Time to compile a tailnet's policy for its devices", advice: Seconds);

    /// <summary>From a canary device's endpoint change to its peer holding it (<see cref="PropagationCanary"/>).</summary>
    public static readonly Histogram<double> CanaryPropagationDuration = Meter.CreateHistogram<double>("weft.canary.propagation.duration", "s",
        "Time from this node's canary device reporting a new endpoint to its canary peer holding it: the whole path of an agent's change", advice: Seconds);

    public static readonly Counter<long> CanaryProbes = Meter.CreateCounter<long>("weft.canary.probes", "{probe}",
        "Canary changes by outcome: delivered to the peer, or missed (not there when the next was sent)");

    public static KeyValuePair<string, object?> Tailnet(string? tailnetId) => new("tailnet", tailnetId ?? "");

    public static KeyValuePair<string, object?> EntityType(string type) => new("entity", type);

    /// <summary>Seconds since <paramref name="startTimestamp"/> (a <see cref="Stopwatch.GetTimestamp"/>).</summary>
    public static double SecondsSince(long startTimestamp) => Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds;
}
