using Microsoft.AspNetCore.Builder;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Weft.Cluster.Telemetry;

/// <summary>Where telemetry goes besides <c>/metrics</c> (the <c>Weft:Telemetry</c> section).</summary>
public sealed class TelemetrySettings
{
    /// <summary>
    /// An OTLP collector (for example http://127.0.0.1:4317) that receives the traces and metrics;
    /// none by default. The standard OTEL_EXPORTER_OTLP_* variables refine it (protocol, headers).
    /// </summary>
    public string? OtlpEndpoint { get; set; }

    /// <summary>Runs the propagation canary (<see cref="PropagationCanary"/>): two agents of this node in the tailnet <c>weft-canary</c>.</summary>
    public bool Canary { get; set; } = true;

    /// <summary>How often the canary makes a change (and so how often a missed one is noticed).</summary>
    public double CanaryIntervalSeconds { get; set; } = 10;

    public IEnumerable<string> Problems(string prefix)
    {
        if (!string.IsNullOrWhiteSpace(OtlpEndpoint) && (!Uri.TryCreate(OtlpEndpoint, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https")))
            yield return $"{prefix}:OtlpEndpoint must be an http(s):// address, not '{OtlpEndpoint}'";
        if (!(CanaryIntervalSeconds >= 0.1 && CanaryIntervalSeconds <= 3600))
            yield return $"{prefix}:CanaryIntervalSeconds must be between 0.1 and 3600, not {CanaryIntervalSeconds}";
    }
}

/// <summary>
/// OpenTelemetry for a coordinator node: the Weft meters, the relay's and ASP.NET Core's, exported for
/// Prometheus at <c>/metrics</c>, and over OTLP when an endpoint is configured; with that endpoint,
/// also traces from the admin API through the tailnet entity to the netmap fan-out (<see cref="CoordinatorTracing"/>).
/// </summary>
public static class CoordinatorTelemetry
{
    public const string MetricsPath = "/metrics";

    /// <summary>The meter of the .NET runtime's built-in instruments (dotnet.gc.*, dotnet.process.*, dotnet.thread_pool.*, dotnet.jit.*).</summary>
    public const string RuntimeMeterName = "System.Runtime";

    public static IServiceCollection AddCoordinatorTelemetry(this IServiceCollection services, TelemetrySettings settings, string nodeName)
    {
        services.AddSingleton<ShardingStatistics>();
        services.AddHostedService(s => s.GetRequiredService<ShardingStatistics>());
        services.AddHostedService<LongGcPauses>();
        if (settings.Canary && OperatingSystem.IsLinux())
            PropagationCanary.Register(services, settings, nodeName);
        var otlp = string.IsNullOrWhiteSpace(settings.OtlpEndpoint) ? null : new Uri(settings.OtlpEndpoint);
        var telemetry = services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("weft-coordinator", serviceInstanceId: nodeName))
            .WithMetrics(metrics =>
            {
                // System.Runtime: the .NET runtime's own instruments (GC heap by generation, GC pauses, CPU
                // time, working set, thread pool queue, JIT), to size a node and to tell its heap from the rest.
                metrics.AddMeter(CoordinatorMetrics.MeterName, Relay.RelayMetrics.MeterName, RuntimeMeterName)
                    .AddAspNetCoreInstrumentation()
                    // Each scrape reads the instruments now (the exporter would otherwise answer from a 300 ms cache).
                    .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0);
                if (otlp is not null) metrics.AddOtlpExporter(o => o.Endpoint = otlp);
            });
        // Spans go only to an OTLP collector: without one, tracing stays off and no request carries a
        // span that nobody reads (an agent's control stream lives for hours; thousands stay open).
        if (otlp is not null)
            telemetry.WithTracing(tracing => tracing.AddSource(CoordinatorTracing.SourceName)
                .AddAspNetCoreInstrumentation(o => o.Filter = http => !IsScrapeOrProbe(http.Request.Path) && !Control.ControlService.IsGrpcCall(http.Request))
                .AddOtlpExporter(o => o.Endpoint = otlp));
        return services;
    }

    public static void MapMetrics(this WebApplication app) => app.MapPrometheusScrapingEndpoint(MetricsPath);

    private static bool IsScrapeOrProbe(PathString path) =>
        path.StartsWithSegments(MetricsPath) || path.StartsWithSegments(Api.HealthEndpoint.ClusterPath);
}
