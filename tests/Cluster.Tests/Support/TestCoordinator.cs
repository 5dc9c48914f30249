using System.Net.Http.Headers;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Hosting;

namespace Weft.Cluster.Tests.Support;

/// <summary>A real coordinator node in this process: Kestrel on a free loopback port, Akka remoting on another.</summary>
public sealed class TestCoordinator : IAsyncDisposable
{
    /// <summary>Installed as the first operator key of every test cluster.</summary>
    public static readonly string OperatorKey = LabKeys.OperatorKey;

    private TestCoordinator(WebApplication app, Uri api, Uri control)
    {
        App = app;
        Api = api;
        Control = control;
        Http = NewClient(api, OperatorKey);
    }

    /// <summary>Where agents dial the control protocol.</summary>
    public Uri Control { get; }

    public WebApplication App { get; }

    public Uri Api { get; }

    /// <summary>An HTTP client authenticated with the operator key.</summary>
    public HttpClient Http { get; }

    public IServiceProvider Services => App.Services;

    public static async Task<TestCoordinator> StartAsync(TestStorage storage, IEnumerable<KeyValuePair<string, string?>>? extra = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Weft:Api:Listen"] = "http://127.0.0.1:0",
            ["Weft:Control:Listen"] = "http://127.0.0.1:0",
            ["Weft:Relay:Listen"] = "127.0.0.1:0",
            ["Weft:Relay:Stun"] = "127.0.0.1:0",
            ["Weft:Cluster:Port"] = "0",
            ["Weft:BootstrapOperatorKey"] = OperatorKey,
            ["Serilog:MinimumLevel:Default"] = "Warning",
            // A test counts its own devices, agents and tailnets; the canary runs only where a test asks for it.
            ["Weft:Telemetry:Canary"] = "false",
            // The tests' identity provider (npm's oidc-provider) listens on loopback.
            ["Weft:Api:AllowLoopbackIdentityProviders"] = "true",
            // A test class shares one coordinator and may send it over a hundred requests within a second or two,
            // all from 127.0.0.1 with one key (AdminApiTests on a fast machine): the admin rate limit is off unless
            // a test sets it (AdminRateLimitTests).
            ["Weft:Api:RequestsPerSecondPerAddress"] = "0",
            ["Weft:Api:RequestsPerSecondPerKey"] = "0",
        };
        foreach (var (key, value) in storage.Settings.Concat(extra ?? [])) settings[key] = value;

        var app = CoordinatorHost.Build(settings);
        await app.StartAsync();
        try
        {
            var endpoints = await app.Services.GetRequiredService<CoordinatorReadiness>().Endpoints.WaitAsync(TimeSpan.FromSeconds(60));
            return new TestCoordinator(app, endpoints.Api, endpoints.Control);
        }
        catch
        {
            await app.StopAsync();
            await app.DisposeAsync();
            throw;
        }
    }

    public static HttpClient NewClient(Uri api, string? apiKey)
    {
        var client = new HttpClient { BaseAddress = api, Timeout = TimeSpan.FromSeconds(30) };
        if (apiKey is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        return client;
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await App.StopAsync(timeout.Token);
        await App.DisposeAsync();
    }
}
