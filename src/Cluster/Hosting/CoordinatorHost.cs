using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Serilog;
using Weft.Cluster.Api;
using Weft.Cluster.WebConsole;
using Weft.Cluster.Control;
using Weft.Cluster.Replication;
using Weft.Cluster.Telemetry;

using Weft.Cluster.Identity;

namespace Weft.Cluster.Hosting;

/// <summary>
/// Builds a coordinator node: Kestrel with two listeners — the admin API (HTTP/1.1, loopback by
/// default) and the control protocol (gRPC over HTTP/2, for agents) — and the Akka.NET cluster
/// member behind them.
/// </summary>
public static class CoordinatorHost
{
    private const string RoleKey = "weft.endpoint";
    private const string ControlRole = "control";
    private const string ManagementRole = "management";

    public static WebApplication Build(IEnumerable<KeyValuePair<string, string?>>? overrides = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
        if (overrides is not null) builder.Configuration.AddInMemoryCollection(overrides);

        var settings = WeftSettings.From(builder.Configuration);
        builder.Services.AddSingleton(settings);

        var node = $"{settings.Cluster.Hostname}:{settings.Cluster.Port}";
        builder.Services.AddSerilog((_, logger) => CoordinatorLogging.Configure(logger, builder.Configuration, settings, node));

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            var log = kestrel.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger("Weft.Connections");
            var apiConnections = new ConnectionLimiter("admin", settings.Api.Connections, log);
            var controlConnections = new ConnectionLimiter("control", settings.Control.Connections, log);
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = 1024 * 1024;
            // Idle and slow clients do not hold connections: an idle connection goes after 30 s, a
            // request must send its headers within 10 s (Weft:Listeners).
            kestrel.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(settings.Listeners.IdleTimeoutSeconds);
            kestrel.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(settings.Listeners.RequestHeadersTimeoutSeconds);
            // Simulated nodes share connections; each stream's first frame is bounded (MaxClientMessageSize).
            kestrel.Limits.Http2.MaxStreamsPerConnection = 1_000;
            kestrel.Limits.Http2.KeepAlivePingDelay = TimeSpan.FromSeconds(30);
            Listen(kestrel, settings.Api.Listen, HttpProtocols.Http1, role: "admin", apiConnections);
            Listen(kestrel, settings.Control.Listen, HttpProtocols.Http2, role: ControlRole, controlConnections);
            // With Kubernetes discovery the pods probe each other here (cluster bootstrap), pod to pod.
            if (settings.Cluster.Discovery == ClusterDiscovery.Kubernetes)
                Listen(kestrel, $"http://0.0.0.0:{settings.Cluster.Kubernetes.ManagementPort}", HttpProtocols.Http1, role: ManagementRole, apiConnections);
        });

        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<CoordinatorIdentity>();
        builder.Services.AddSingleton<HandshakeReplayGuard>();
        builder.Services.AddSingleton<SessionServicesProvider>();
        builder.Services.AddSingleton(services => new ControlAdmission(settings.Control, services.GetRequiredService<TimeProvider>()));
        builder.Services.AddGrpc(grpc =>
        {
            // Agents send small messages only: a much larger frame is refused (ResourceExhausted) before it
            // is buffered; one just over the limit gets our precise frame_too_large.
            grpc.MaxReceiveMessageSize = Contracts.Control.ControlProtocol.MaxClientMessageSize + 1024;
            grpc.MaxSendMessageSize = Contracts.Control.ControlProtocol.MaxFrameSize + 1024;
        });
        builder.Services.AddSingleton(settings.Storage);
        builder.Services.AddSingleton<Persistence.StorageProbe>();
        builder.Services.AddReplicas();
        // Held from before anything opens the database until the host has stopped (see SqliteWriterLock).
        var writerLock = Persistence.SqliteWriterLock.Acquire(settings.Storage);
        WebApplication app;
        try
        {
            var secret = ClusterSecret.Resolve(settings.Cluster, settings.Storage);
            builder.Services.AddSingleton(secret);
            builder.Services.AddSingleton(settings.Relay);
            builder.Services.AddSingleton<Relays.RelayTicketIssuer>();
            builder.Services.AddSingleton<Relays.RelayAccessChecker>();
            builder.Services.AddSingleton<Relays.EmbeddedRelay>();
            builder.Services.AddHostedService(services => services.GetRequiredService<Relays.EmbeddedRelay>());
            builder.Services.AddCoordinatorActorSystem(settings, secret);
            builder.Services.AddAdminApi(settings.Api);
            builder.Services.AddDeviceLogin();
            builder.Services.AddCoordinatorTelemetry(settings.Telemetry, node);
            builder.Services.AddSingleton<CoordinatorReadiness>();
            builder.Services.AddHostedService<CoordinatorStartup>();
            builder.Services.AddHostedService<GracefulShutdown>();

            app = builder.Build();
        }
        catch
        {
            writerLock?.Dispose();
            throw;
        }
        if (writerLock is not null) app.Lifetime.ApplicationStopped.Register(writerLock.Dispose);
        // Each listener serves its own protocol only: the admin API is not reachable on the agents' port,
        // and the management port serves the bootstrap probe and nothing else.
        app.Use(async (http, next) =>
        {
            var role = http.Features.Get<IConnectionItemsFeature>()?.Items.TryGetValue(RoleKey, out var value) == true ? value as string : null;
            var isGrpc = ControlService.IsGrpcCall(http.Request);
            var allowed = role switch
            {
                ControlRole => isGrpc,
                ManagementRole => http.Request.Path == KubernetesBootstrap.Route,
                _ => !isGrpc && http.Request.Path != KubernetesBootstrap.Route,
            };
            if (!allowed)
            {
                http.Response.StatusCode = StatusCodes.Status404NotFound;
                return;
            }
            // An agent's control stream goes straight to its gRPC endpoint. The web's middleware below
            // (sign-in cookies, rate limits, API errors) is not for it, and each would keep its state
            // for as long as the stream lives: for thousands of agents, hours on end.
            if (role == ControlRole && http.GetEndpoint()?.RequestDelegate is { } control)
            {
                await control(http);
                return;
            }
            await next(http);
        });
        // Here rather than first in the pipeline, where WebApplication would put it by itself.
        app.UseAuthentication();
        app.MapGrpcService<ControlService>();
        if (settings.Cluster.Discovery == ClusterDiscovery.Kubernetes) app.MapBootstrapRoute();
        app.MapMetrics();
        app.MapAdminConsole();
        app.MapDeviceLogin();
        app.MapConsoleSignIn();
        app.MapAdminApi();
        return app;
    }

    private static void Listen(KestrelServerOptions kestrel, string url, HttpProtocols protocols, string role, ConnectionLimiter limiter)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme != "http")
            throw new InvalidOperationException($"'{url}' is not an http://host:port address (TLS belongs to a proxy in front)");
        var address = uri.Host is "*" or "+" or "0.0.0.0" ? IPAddress.Any
            : uri.Host is "[::]" or "::" ? IPAddress.IPv6Any
            : IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) ? ip
            : uri.Host == "localhost" ? IPAddress.Loopback
            : throw new InvalidOperationException($"'{url}': listen on an IP address, not a host name");
        kestrel.Listen(address, uri.Port, listen =>
        {
            listen.Protocols = protocols;
            listen.Use(next => connection =>
            {
                connection.Items[RoleKey] = role;
                return limiter.Run(connection, next);
            });
        });
    }
}
