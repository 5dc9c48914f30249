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

    public static WeftSettings From(IConfiguration configuration) =>
        configuration.GetSection(Section).Get<WeftSettings>() ?? new WeftSettings();

    public ApiSettings Api { get; set; } = new();
    public Control.ControlSettings Control { get; set; } = new();
    public ClusterNodeSettings Cluster { get; set; } = new();
    public StorageSettings Storage { get; set; } = new();
    public PersistenceSettings Persistence { get; set; } = new();

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
}

public sealed class ClusterNodeSettings
{
    public const string ActorSystemName = "weft";

    /// <summary>The address Akka.Remote binds and advertises.</summary>
    public string Hostname { get; set; } = "127.0.0.1";

    /// <summary>Akka.Remote port; 0 picks a free one (tests).</summary>
    public int Port { get; set; } = 4053;

    /// <summary>
    /// Seed nodes to join, as <c>host:port</c> or full <c>akka.tcp://weft@host:port</c> addresses.
    /// Empty: this node forms a one-node cluster by itself.
    /// </summary>
    public string[] Seeds { get; set; } = [];

    public static string ToSeedAddress(string seed) =>
        seed.Contains("://", StringComparison.Ordinal) ? seed : $"akka.tcp://{ActorSystemName}@{seed}";
}
