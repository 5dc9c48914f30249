using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Weft.Cluster.Identity;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

public static class AdminApi
{
    public static IServiceCollection AddAdminApi(this IServiceCollection services, Hosting.ApiSettings settings) => services
        .AddSingleton<TailnetRefs>()
        .AddSingleton<IdempotentCreation>()
        .AddSingleton<Identity.ProviderDiscovery>()
        .AddSingleton<Identity.LoginLinks>()
        .AddHttpClient()
        .AddCoordinatorHealthChecks().Services
        .AddAdminRateLimit(settings);

    /// <summary>/healthz, and the relays' access checks (whose tickets are their credentials), without a key; everything under /api/v1 with one.</summary>
    public static WebApplication MapAdminApi(this WebApplication app)
    {
        app.UseMiddleware<ApiErrorMiddleware>();
        app.UseRateLimiter();
        app.UseWhen(http => http.Request.Path.StartsWithSegments("/api"), api => api
            .UseMiddleware<ApiKeyAuthentication>()
            .UseMiddleware<Audit.AuditTrail>()
            .Use(WithTailnetAndDevice));

        app.MapHealthEndpoints();
        Relays.RelayAccessEndpoint.MapRelayAccessEndpoint(app);
        var v1 = app.MapGroup("/api/v1");
        v1.MapTailnetEndpoints();
        v1.MapMemberEndpoints();
        v1.MapPolicyEndpoints();
        v1.MapSsoEndpoints();
        v1.MapApiKeyEndpoints();
        v1.MapAuditEndpoints();
        v1.MapMeshEndpoints();
        v1.MapClusterEndpoints();
        v1.MapSessionEndpoint();

        app.MapFallback((HttpContext http) =>
            throw new ApiException(ApiErrorCodes.NotFound, $"no such endpoint: {http.Request.Method} {http.Request.Path}"));
        return app;
    }

    /// <summary>What a request logs carries the tailnet and device it addresses (as the path names them).</summary>
    private static async Task WithTailnetAndDevice(HttpContext http, Func<Task> next)
    {
        using var tailnet = http.GetRouteValue("tailnet") is string t ? Serilog.Context.LogContext.PushProperty(Hosting.CoordinatorLogging.TailnetProperty, t) : null;
        using var device = http.GetRouteValue("device") is string d ? Serilog.Context.LogContext.PushProperty(Hosting.CoordinatorLogging.DeviceProperty, d) : null;
        await next();
    }
}
