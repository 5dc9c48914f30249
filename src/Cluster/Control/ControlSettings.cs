using Weft.Contracts.Control;

namespace Weft.Cluster.Control;

/// <summary>Where agents reach the control protocol, and the coordinator's identity. Bound from <c>Weft:Control</c>.</summary>
public sealed class ControlSettings
{
    /// <summary>gRPC (HTTP/2 without TLS; the Noise channel inside authenticates and encrypts).</summary>
    public string Listen { get; set; } = "http://0.0.0.0:7650";

    /// <summary>
    /// The coordinator's private key (base64), shared by every node. When unset, the cluster
    /// generates one once and keeps it in its store, so that every node uses the same.
    /// </summary>
    public string? PrivateKey { get; set; }

    /// <summary>
    /// The control URLs of every node, sent with every full netmap so that agents learn where else
    /// to reconnect. Empty (the default): agents keep the URLs they were started with.
    /// </summary>
    public string[] PublicUrls { get; set; } = [];

    /// <summary>How often each tailnet times out silent devices, removes ephemeral ones and expires due keys.</summary>
    public double HousekeepingSeconds { get; set; } = 15;

    /// <summary>
    /// How often a session re-attaches to its device's entity. It must be shorter than sharding's
    /// passivation timeout (akka.hocon) and the presence timeout: the re-attach keeps the entity awake,
    /// re-links it after it moved or restarted, and is the device's presence heartbeat.
    /// </summary>
    public double SessionReattachSeconds { get; set; } = 20;

    /// <summary>A device whose session has not re-attached for this long counts as offline (three missed re-attaches).</summary>
    public double PresenceTimeoutSeconds { get; set; } = 60;

    /// <summary>
    /// How often a session makes sure it hears from its agent (a ping when the agent has been quiet this
    /// long); an agent silent for three of these is dropped. At most the protocol's 10 s, because agents
    /// drop a coordinator they have not heard from for 30 s; shorter only in tests.
    /// </summary>
    public double KeepAliveSeconds { get; set; } = ControlProtocol.KeepAliveInterval.TotalSeconds;

    /// <summary>
    /// A tailnet sends its peers' changes out at most once per this many milliseconds, the changes of
    /// the window together; the first change after a quiet spell goes at once. 0: every change at once.
    /// </summary>
    public double FanOutCoalesceMilliseconds { get; set; } = 10;

    public Hosting.ConnectionLimitSettings Connections { get; set; } = Hosting.ConnectionLimitSettings.ForControl();

    /// <summary>Streams on this node that may be in their handshake at once; more wait their turn refused (rate_limited).</summary>
    public int MaxPendingHandshakes { get; set; } = 1000;

    /// <summary>New control streams this node admits per second (twice that in a burst); 0: no limit.</summary>
    public double ConnectsPerSecond { get; set; } = 1000;

    /// <summary>New control streams, and separately registrations, this node admits per second from one IP address (twice that in a burst); 0: no limit.</summary>
    public double ConnectsPerSecondPerAddress { get; set; } = 50;

    /// <summary>
    /// Registrations this node admits per second (twice that in a burst); 0: no limit. The default is a
    /// little under what one node on SQLite registers with nothing holding it back, on a 2-core host it
    /// shares with the load tester (440-473/s); a storm beyond it is told to come back, not queued.
    /// </summary>
    public double RegistrationsPerSecond { get; set; } = 400;

    /// <summary>Completed control handshakes of one machine key this node admits per second (twice that in a burst); 0: no limit.</summary>
    public double HandshakesPerSecondPerMachine { get; set; } = 2;

    /// <summary>Registrations with one auth key this node admits per second, from any address (twice that in a burst); 0: no limit.</summary>
    public double RegistrationsPerSecondPerAuthKey { get; set; } = 50;

    /// <summary>Messages from one agent its session may have waiting; one more ends the stream (the agent reconnects).</summary>
    public int InboundQueueLength { get; set; } = 256;

    // What one device (its machine key, on any of its streams, across reconnects) may ask of the cluster. Each
    // of these costs every tenant on the node something: a journal write, a patch to every peer, a full map
    // built and sent. A request beyond its budget is not refused but held, the latest of each kind, and
    // handled as soon as the budget allows (an agent never needs the ones in between). 0: no limit.

    /// <summary>Endpoint reports per second per device (twice that in a burst); each patches every peer.</summary>
    public double EndpointReportsPerSecondPerDevice { get; set; } = 10;

    /// <summary>Host-info reports (host name, OS, advertised routes) per minute per device, as many in a burst; each is a journal write and patches every peer.</summary>
    public double HostinfoReportsPerMinutePerDevice { get; set; } = 6;

    /// <summary>Subscribes per minute per device, as many in a burst; one that misses the device's recent deltas builds and sends a full map.</summary>
    public double SubscribesPerMinutePerDevice { get; set; } = 12;

    /// <summary>Node-key rotations per hour per device, as many in a burst; each is a journal write and patches every peer.</summary>
    public double NodeKeyRotationsPerHourPerDevice { get; set; } = 12;

    /// <summary>Registrations per minute per device on a stream that already has its device, as many in a burst; more are refused <c>rate_limited</c>.</summary>
    public double RegistrationsPerMinutePerDevice { get; set; } = 12;

    /// <summary>Control streams one machine key may hold open on this node; a newer one ends the oldest (an agent holds one).</summary>
    public int StreamsPerMachine { get; set; } = 4;

    /// <summary>A stream with no device ends after this long, unless a registration of it waits for an admin's approval or a login (the agent asks again every few seconds).</summary>
    public double UnregisteredStreamSeconds { get; set; } = 60;

    public IEnumerable<string> Problems(string prefix)
    {
        foreach (var url in PublicUrls)
            if (!Uri.TryCreate(url, UriKind.Absolute, out var parsed) || parsed.Scheme is not ("http" or "https"))
                yield return $"{prefix}:PublicUrls has '{url}', which is not an absolute http or https URL";
        foreach (var problem in Connections.Problems($"{prefix}:Connections")) yield return problem;
        if (MaxPendingHandshakes < 1) yield return $"{prefix}:MaxPendingHandshakes must be at least 1, not {MaxPendingHandshakes}";
        if (!(HousekeepingSeconds > 0)) yield return $"{prefix}:HousekeepingSeconds must be more than 0, not {HousekeepingSeconds}";
        if (!(FanOutCoalesceMilliseconds is >= 0 and <= 10_000))
            yield return $"{prefix}:FanOutCoalesceMilliseconds must be from 0 to 10000, not {FanOutCoalesceMilliseconds}";
        if (!(SessionReattachSeconds > 0)) yield return $"{prefix}:SessionReattachSeconds must be more than 0, not {SessionReattachSeconds}";
        if (!(PresenceTimeoutSeconds > SessionReattachSeconds))
            yield return $"{prefix}:PresenceTimeoutSeconds ({PresenceTimeoutSeconds}) must be longer than SessionReattachSeconds ({SessionReattachSeconds}): " +
                "a re-attach is a connected device's presence heartbeat";
        if (!(KeepAliveSeconds > 0 && KeepAliveSeconds <= ControlProtocol.KeepAliveInterval.TotalSeconds))
            yield return $"{prefix}:KeepAliveSeconds must be more than 0 and at most {ControlProtocol.KeepAliveInterval.TotalSeconds:0} " +
                $"(agents leave a coordinator silent for {ControlProtocol.SilenceLimit.TotalSeconds:0} s), not {KeepAliveSeconds}";
        if (!(ConnectsPerSecond >= 0)) yield return $"{prefix}:ConnectsPerSecond must be 0 (no limit) or more, not {ConnectsPerSecond}";
        if (!(ConnectsPerSecondPerAddress >= 0)) yield return $"{prefix}:ConnectsPerSecondPerAddress must be 0 (no limit) or more, not {ConnectsPerSecondPerAddress}";
        if (InboundQueueLength is < 1 or > 100_000) yield return $"{prefix}:InboundQueueLength must be from 1 to 100000, not {InboundQueueLength}";
        if (!(HandshakesPerSecondPerMachine >= 0)) yield return $"{prefix}:HandshakesPerSecondPerMachine must be 0 (no limit) or more, not {HandshakesPerSecondPerMachine}";
        if (!(RegistrationsPerSecondPerAuthKey >= 0)) yield return $"{prefix}:RegistrationsPerSecondPerAuthKey must be 0 (no limit) or more, not {RegistrationsPerSecondPerAuthKey}";
        if (!(RegistrationsPerSecond >= 0)) yield return $"{prefix}:RegistrationsPerSecond must be 0 (no limit) or more, not {RegistrationsPerSecond}";
        if (!(EndpointReportsPerSecondPerDevice >= 0)) yield return $"{prefix}:EndpointReportsPerSecondPerDevice must be 0 (no limit) or more, not {EndpointReportsPerSecondPerDevice}";
        if (!(HostinfoReportsPerMinutePerDevice >= 0)) yield return $"{prefix}:HostinfoReportsPerMinutePerDevice must be 0 (no limit) or more, not {HostinfoReportsPerMinutePerDevice}";
        if (!(SubscribesPerMinutePerDevice == 0 || SubscribesPerMinutePerDevice >= 4))
            yield return $"{prefix}:SubscribesPerMinutePerDevice must be 0 (no limit) or at least 4 (a subscribe held longer than agents wait for its answer, 30 s, " +
                $"would make them reconnect over and over), not {SubscribesPerMinutePerDevice}";
        if (!(RegistrationsPerMinutePerDevice >= 0)) yield return $"{prefix}:RegistrationsPerMinutePerDevice must be 0 (no limit) or more, not {RegistrationsPerMinutePerDevice}";
        if (!(NodeKeyRotationsPerHourPerDevice >= 0)) yield return $"{prefix}:NodeKeyRotationsPerHourPerDevice must be 0 (no limit) or more, not {NodeKeyRotationsPerHourPerDevice}";
        if (StreamsPerMachine is < 1 or > 1000) yield return $"{prefix}:StreamsPerMachine must be from 1 to 1000, not {StreamsPerMachine}";
        if (!(UnregisteredStreamSeconds >= 2 * Sessions.DeviceRegistrar.ApprovalPollMs / 1000.0 && UnregisteredStreamSeconds <= 86_400))
            yield return $"{prefix}:UnregisteredStreamSeconds must be from {2 * Sessions.DeviceRegistrar.ApprovalPollMs / 1000} to 86400 " +
                $"(twice how often an agent waiting for approval asks again), not {UnregisteredStreamSeconds}";
    }
}
