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

    /// <summary>A device whose session has not been confirmed for this long counts as offline.</summary>
    public double PresenceTimeoutSeconds { get; set; } = 90;
}
