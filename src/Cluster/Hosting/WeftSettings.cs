using Weft.Cluster.Persistence;

namespace Weft.Cluster.Hosting;

/// <summary>
/// Everything a coordinator node is told at start, bound from the <c>Weft</c> configuration section
/// (appsettings, <c>Weft__…</c> environment variables, then command-line flags, the last winning).
/// Akka's own tuning lives in <c>akka.hocon</c>.
/// </summary>
public sealed class WeftSettings
{
    public const string Section = "Weft";

    /// <summary>The settings, checked: a value out of its range stops the start with every problem named by its key.</summary>
    public static WeftSettings From(IConfiguration configuration)
    {
        var settings = configuration.GetSection(Section).Get<WeftSettings>() ?? new WeftSettings();
        var problems = settings.Problems().ToList();
        if (problems.Count > 0) throw new InvalidOperationException("invalid settings: " + string.Join("; ", problems));
        return settings;
    }

    /// <summary>Every setting outside its range, named by its key (<c>Weft:Section:Key</c>).</summary>
    public IEnumerable<string> Problems() =>
        Control.Problems($"{Section}:Control")
            .Concat(Cluster.Problems($"{Section}:Cluster"))
            .Concat(Persistence.Problems($"{Section}:Persistence"))
            .Concat(Api.Problems($"{Section}:Api"))
            .Concat(Listeners.Problems($"{Section}:Listeners"))
            .Concat(Relay.Problems($"{Section}:Relay"))
            .Concat(Telemetry.Problems($"{Section}:Telemetry"));

    public ApiSettings Api { get; set; } = new();

    public ListenerTimeouts Listeners { get; set; } = new();
    public Control.ControlSettings Control { get; set; } = new();
    public ClusterNodeSettings Cluster { get; set; } = new();
    public StorageSettings Storage { get; set; } = new();
    public PersistenceSettings Persistence { get; set; } = new();
    public Relays.RelaySettings Relay { get; set; } = new();
    public Telemetry.TelemetrySettings Telemetry { get; set; } = new();

    /// <summary>
    /// The operator key to install at the first start, instead of a random one. For automation
    /// (tests, provisioning); ignored once any operator key exists.
    /// </summary>
    public string? BootstrapOperatorKey { get; set; }

    /// <summary>Console log format: human-readable text (default) or one JSON object per event.</summary>
    public LogFormat LogFormat { get; set; } = LogFormat.Text;

    /// <summary>Path of the HOCON file with Akka's tuning; by default the akka.hocon next to the executable.</summary>
    public string? AkkaConfigFile { get; set; }
}

public enum LogFormat
{
    Text,
    Json,
}

public sealed class ApiSettings
{
    /// <summary>Where the admin API and /healthz listen. Loopback by default: put TLS and access control in front.</summary>
    public string Listen { get; set; } = "http://127.0.0.1:8080";

    public ConnectionLimitSettings Connections { get; set; } = ConnectionLimitSettings.ForApi();

    /// <summary>Admin API requests (and /healthz) one IP address may make per second, twice that in a burst; 0: no limit.</summary>
    public double RequestsPerSecondPerAddress { get; set; } = 50;

    /// <summary>Admin API requests one API key may make per second, from any address, twice that in a burst; 0: no limit.</summary>
    public double RequestsPerSecondPerKey { get; set; } = 100;

    /// <summary>
    /// Tailnet admins may name an identity provider on this machine's loopback (plain http). Off by
    /// default: the coordinator reads a provider's discovery document when it is set, and a provider
    /// address on loopback would let a tenant probe the coordinator host's local services. Tests turn it on.
    /// </summary>
    public bool AllowLoopbackIdentityProviders { get; set; }

    /// <summary>
    /// Where people's browsers reach this listener (behind the TLS proxy: https://weft.example.com).
    /// Login links and the identity providers' redirect URIs are made from it. Unset: the address the
    /// listener bound, which only browsers on this machine reach.
    /// </summary>
    public string? PublicUrl { get; set; }

    /// <summary>How long a device's login link stays valid (an agent that still waits then shows a new one).</summary>
    public int LoginLinkSeconds { get; set; } = 600;

    public IEnumerable<string> Problems(string prefix)
    {
        if (!(RequestsPerSecondPerAddress >= 0)) yield return $"{prefix}:RequestsPerSecondPerAddress must be 0 (no limit) or more, not {RequestsPerSecondPerAddress}";
        if (PublicUrl is { Length: > 0 } url && (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.Query.Length > 0 || uri.Fragment.Length > 0))
            yield return $"{prefix}:PublicUrl '{url}' is not an absolute http or https URL without query or fragment";
        if (LoginLinkSeconds is < 5 or > 86_400) yield return $"{prefix}:LoginLinkSeconds must be from 5 to 86400, not {LoginLinkSeconds}";
        if (!(RequestsPerSecondPerKey >= 0)) yield return $"{prefix}:RequestsPerSecondPerKey must be 0 (no limit) or more, not {RequestsPerSecondPerKey}";
        foreach (var problem in Connections.Problems($"{prefix}:Connections")) yield return problem;
    }
}

/// <summary>How long both listeners (admin and control) wait on a client that is idle or slow.</summary>
public sealed class ListenerTimeouts
{
    /// <summary>A connection with no request in progress is closed after this long (HTTP/1.1 keep-alive; HTTP/2 with no stream).</summary>
    public int IdleTimeoutSeconds { get; set; } = 30;

    /// <summary>A request must have sent all its headers within this long, or its connection is closed.</summary>
    public int RequestHeadersTimeoutSeconds { get; set; } = 10;

    public IEnumerable<string> Problems(string prefix)
    {
        if (IdleTimeoutSeconds is < 1 or > 3600) yield return $"{prefix}:IdleTimeoutSeconds must be from 1 to 3600, not {IdleTimeoutSeconds}";
        if (RequestHeadersTimeoutSeconds is < 1 or > 600) yield return $"{prefix}:RequestHeadersTimeoutSeconds must be from 1 to 600, not {RequestHeadersTimeoutSeconds}";
    }
}

public sealed class ClusterNodeSettings
{
    public const string ActorSystemName = "weft";

    /// <summary>The address Akka.Remote binds and advertises.</summary>
    public string Hostname { get; set; } = "127.0.0.1";

    /// <summary>Akka.Remote port; 0 picks a free one (tests).</summary>
    public int Port { get; set; } = 4053;

    /// <summary>
    /// Seed nodes to join, as <c>host:port</c> or full <c>akka.ssl.tcp://weft@host:port</c> addresses.
    /// Empty: this node forms a one-node cluster by itself.
    /// </summary>
    public string[] Seeds { get; set; } = [];

    /// <summary>The scheme of cluster addresses: Akka.Remote always runs over mutual TLS.</summary>
    public const string AddressScheme = "akka.ssl.tcp";

    /// <summary><c>host:port</c> or a full address (an <c>akka.tcp://</c> one is taken as meant for TLS) as an address to join.</summary>
    public static string ToSeedAddress(string seed) =>
        seed.StartsWith("akka.tcp://", StringComparison.Ordinal) ? AddressScheme + seed["akka.tcp".Length..]
        : seed.Contains("://", StringComparison.Ordinal) ? seed
        : $"{AddressScheme}://{ActorSystemName}@{seed}";

    /// <summary>The cluster secret itself (base64, at least 32 bytes). Prefer <see cref="SecretFile"/>; see <see cref="ClusterSecret"/>.</summary>
    public string? Secret { get; set; }

    /// <summary>A file (mode 0600) holding the cluster secret, the same on every node.</summary>
    public string? SecretFile { get; set; }

    /// <summary>How the nodes find each other: the seeds above, or Kubernetes.</summary>
    public ClusterDiscovery Discovery { get; set; } = ClusterDiscovery.Seeds;

    /// <summary>With <see cref="ClusterDiscovery.Kubernetes"/>: which pods are the cluster's nodes.</summary>
    public KubernetesDiscoverySettings Kubernetes { get; set; } = new();

    public IEnumerable<string> Problems(string prefix)
    {
        if (Port is < 0 or > 65535) yield return $"{prefix}:Port must be a port number (0-65535), not {Port}";
        if (Discovery == ClusterDiscovery.Kubernetes)
        {
            if (Kubernetes.RequiredContactPoints < 1)
                yield return $"{prefix}:Kubernetes:RequiredContactPoints must be at least 1, not {Kubernetes.RequiredContactPoints}";
            if (Kubernetes.ManagementPort is < 1 or > 65535)
                yield return $"{prefix}:Kubernetes:ManagementPort must be a port number (1-65535), not {Kubernetes.ManagementPort}";
            if (!string.IsNullOrEmpty(Kubernetes.ApiUrl) && !Uri.TryCreate(Kubernetes.ApiUrl, UriKind.Absolute, out _))
                yield return $"{prefix}:Kubernetes:ApiUrl must be an absolute URL, not '{Kubernetes.ApiUrl}'";
        }
    }
}

public enum ClusterDiscovery
{
    /// <summary>Join the configured seed nodes (none: form a cluster of one).</summary>
    Seeds,
    /// <summary>
    /// Akka.Management cluster bootstrap: the pods are found through the Kubernetes API, they probe each
    /// other's management endpoint, and the pod with the lowest address forms the cluster when the
    /// required number of them agree; the others join it. No seed list to maintain.
    /// </summary>
    Kubernetes,
}

public sealed class KubernetesDiscoverySettings
{
    /// <summary>The pods of this cluster (a label selector).</summary>
    public string PodLabelSelector { get; set; } = "app.kubernetes.io/name=weft";

    /// <summary>Their namespace; empty: the pod's own (read from its service account).</summary>
    public string? PodNamespace { get; set; }

    /// <summary>The bootstrap's name for the cluster (shared by every node of it).</summary>
    public string ServiceName { get; set; } = "weft";

    /// <summary>How many pods must see each other before a new cluster forms (a StatefulSet's replicas, or fewer).</summary>
    public int RequiredContactPoints { get; set; } = 2;

    /// <summary>The Akka.Management HTTP port the pods probe each other on (a container port named "management").</summary>
    public int ManagementPort { get; set; } = 8558;

    /// <summary>The Kubernetes API; empty: the one Kubernetes tells every pod (KUBERNETES_SERVICE_HOST and _PORT).</summary>
    public string? ApiUrl { get; set; }

    /// <summary>The pod's service account, as Kubernetes mounts it in every pod.</summary>
    public string TokenPath { get; set; } = "/var/run/secrets/kubernetes.io/serviceaccount/token";

    public string CaPath { get; set; } = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

    public string NamespacePath { get; set; } = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
}
