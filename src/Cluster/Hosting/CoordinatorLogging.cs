using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace Weft.Cluster.Hosting;

/// <summary>
/// The coordinator's Serilog set-up. Every event carries the cluster node (<c>Node</c>), and events
/// about one tailnet or device carry <c>Tailnet</c> and <c>Device</c> (from the entity's actor path,
/// or pushed by the admin API for a request on a tailnet). The console is short: Akka's own
/// informational chatter (remoting, membership, singletons, shard regions) shows at Debug only,
/// ASP.NET Core's start-up lines not at all (the banner says where Weft listens), and each line names
/// its source and the tailnet or device it is about, not Akka's thread and actor-path noise.
/// </summary>
public static class CoordinatorLogging
{
    public const string NodeProperty = "Node";
    public const string TailnetProperty = "Tailnet";
    public const string DeviceProperty = "Device";

    private const string AkkaSource = "Akka.Actor.ActorSystem";
    /// <summary>What an event logged through Akka shows as its source: <c>akka:</c> and the actor's path.</summary>
    private const string AkkaPrefix = "akka:";
    private const string TextTemplate = "{Timestamp:HH:mm:ss.fff} {Level:u3} {SourceContext}: {Message:lj}{About}{NewLine}{Exception}";

    public static void Configure(LoggerConfiguration logger, IConfiguration configuration, WeftSettings settings, string node)
    {
        // The sinks the coordinator ships are named, not found by scanning its folder for "*Serilog*.dll":
        // a scan loads whatever lies there (the agent's Akka.Logger.Serilog where both are built side by side).
        logger.ReadFrom.Configuration(configuration, new Serilog.Settings.Configuration.ConfigurationReaderOptions(
                typeof(ConsoleLoggerConfigurationExtensions).Assembly))
            .MinimumLevel.Override("Microsoft.AspNetCore", LogEventLevel.Warning)
            .MinimumLevel.Override("Microsoft.Hosting.Lifetime", LogEventLevel.Warning)
            .MinimumLevel.Override("Grpc", LogEventLevel.Warning)
            .Enrich.FromLogContext()
            .Enrich.WithProperty(NodeProperty, node)
            .Enrich.With<ActorContextEnricher>();
        var debug = configuration.GetValue<string>("Serilog:MinimumLevel:Default") is { } level
            && Enum.TryParse<LogEventLevel>(level, ignoreCase: true, out var parsed) && parsed <= LogEventLevel.Debug;
        if (!debug) logger.Filter.ByExcluding(IsAkkaChatter);
        if (settings.LogFormat == LogFormat.Json) logger.WriteTo.Console(new RenderedCompactJsonFormatter());
        else logger.WriteTo.Console(outputTemplate: TextTemplate);
    }

    /// <summary>
    /// Akka's own informational events: logged through Akka (source <c>Akka.Actor.ActorSystem</c>) by an
    /// actor that is not Weft's (Weft's are the sharded entities and the actors under /user).
    /// </summary>
    public static bool IsAkkaChatter(LogEvent e) =>
        e.Level < LogEventLevel.Warning
        && e.Properties.TryGetValue(Constants.SourceContextPropertyName, out var source)
        && source is ScalarValue { Value: string name } && (name == AkkaSource || name.StartsWith(AkkaPrefix, StringComparison.Ordinal))
        && !(e.Properties.TryGetValue(ActorContextEnricher.ActorProperty, out var actor) && actor is ScalarValue { Value: string path } && ActorContextEnricher.IsWeftActor(path));

    /// <summary>
    /// Names the tailnet or device an actor's event is about, from the actor's path
    /// (<c>/system/sharding/tailnet/&lt;shard&gt;/&lt;tailnet&gt;</c>, <c>…/device/&lt;shard&gt;/&lt;device&gt;</c>),
    /// shortens Akka's source to the actor, and drops the thread; <c>About</c> renders them for the text console.
    /// </summary>
    public sealed class ActorContextEnricher : ILogEventEnricher
    {
        public const string ActorProperty = "Actor";

        public void Enrich(LogEvent e, ILogEventPropertyFactory factory)
        {
            e.RemovePropertyIfPresent("Thread");
            if (e.Properties.TryGetValue("ActorPath", out var pathValue) && pathValue is ScalarValue { Value: string actorPath })
            {
                e.RemovePropertyIfPresent("ActorPath");
                e.RemovePropertyIfPresent("LogSource");
                var path = LocalPath(actorPath);
                e.AddOrUpdateProperty(factory.CreateProperty(ActorProperty, path));
                var segments = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
                if (segments is ["system", "sharding", var type, _, var entity, ..])
                {
                    var id = Uri.UnescapeDataString(entity);
                    if (type == "tailnet") e.AddPropertyIfAbsent(factory.CreateProperty(TailnetProperty, id));
                    else if (type == "device") e.AddPropertyIfAbsent(factory.CreateProperty(DeviceProperty, id));
                }
                if (e.Properties.TryGetValue(Constants.SourceContextPropertyName, out var source) && source is ScalarValue { Value: AkkaSource })
                    e.AddOrUpdateProperty(factory.CreateProperty(Constants.SourceContextPropertyName, AkkaPrefix + path));
            }
            if (About(e) is { Length: > 0 } about) e.AddOrUpdateProperty(factory.CreateProperty("About", about));
        }

        /// <summary>Weft's actors: the sharded entities (not the regions and coordinators) and what Weft starts under /user.</summary>
        public static bool IsWeftActor(string path) =>
            path.StartsWith("/user/", StringComparison.Ordinal)
            || path.Split('/', StringSplitOptions.RemoveEmptyEntries) is ["system", "sharding", var region, _, _, ..]
               && !region.EndsWith("Coordinator", StringComparison.Ordinal); // the shard coordinator singletons are Akka's

        private static string LocalPath(string actorPath)
        {
            // akka://weft/system/… or akka.ssl.tcp://weft@host:port/system/…
            var scheme = actorPath.IndexOf("://", StringComparison.Ordinal);
            if (scheme < 0) return actorPath;
            var slash = actorPath.IndexOf('/', scheme + 3);
            return slash < 0 ? "/" : actorPath[slash..];
        }

        private static string About(LogEvent e)
        {
            var tailnet = e.Properties.TryGetValue(TailnetProperty, out var t) ? $" tailnet={Plain(t)}" : "";
            var device = e.Properties.TryGetValue(DeviceProperty, out var d) ? $" device={Plain(d)}" : "";
            return tailnet.Length + device.Length == 0 ? "" : $" ({(tailnet + device).TrimStart()})";
        }

        private static string Plain(LogEventPropertyValue value) => value is ScalarValue { Value: var v } ? v?.ToString() ?? "" : value.ToString();
    }
}
