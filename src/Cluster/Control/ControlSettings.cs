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

    /// <summary>New control streams this node admits per second (twice that in a burst); 0: no limit.</summary>
    public double ConnectsPerSecond { get; set; } = 1000;

    /// <summary>Registrations this node admits per second (twice that in a burst); 0: no limit.</summary>
    public double RegistrationsPerSecond { get; set; } = 200;
}
