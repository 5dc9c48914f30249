using Microsoft.AspNetCore.Builder;
using Serilog;
using Serilog.Formatting.Compact;
using Weft.Cluster.Api;

namespace Weft.Cluster.Hosting;

/// <summary>Builds a coordinator node: Kestrel with the admin API, and the Akka.NET cluster member behind it.</summary>
public static class CoordinatorHost
{
    public static WebApplication Build(IEnumerable<KeyValuePair<string, string?>>? overrides = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
        if (overrides is not null) builder.Configuration.AddInMemoryCollection(overrides);

        var settings = WeftSettings.From(builder.Configuration);
        builder.Services.AddSingleton(settings);

        builder.Services.AddSerilog((services, logger) =>
        {
            logger.ReadFrom.Configuration(builder.Configuration)
                .MinimumLevel.Override("Microsoft.AspNetCore", Serilog.Events.LogEventLevel.Warning)
                .Enrich.FromLogContext();
            if (settings.LogFormat == LogFormat.Json) logger.WriteTo.Console(new RenderedCompactJsonFormatter());
            else logger.WriteTo.Console(outputTemplate: "{Timestamp:HH:mm:ss.fff} {Level:u3} {SourceContext}: {Message:lj} {Properties:j}{NewLine}{Exception}");
        });

        builder.WebHost.UseUrls(settings.Api.Listen);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = 1024 * 1024;
        });

        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddCoordinatorActorSystem(settings);
        builder.Services.AddAdminApi();
        builder.Services.AddSingleton<CoordinatorReadiness>();
        builder.Services.AddHostedService<CoordinatorStartup>();

        var app = builder.Build();
        app.MapAdminApi();
        return app;
    }
}
