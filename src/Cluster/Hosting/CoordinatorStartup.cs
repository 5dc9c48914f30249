using Akka.Actor;
using Akka.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Weft.Cluster.Api;
using Weft.Cluster.ApiKeys;

namespace Weft.Cluster.Hosting;

/// <summary>What a caller (or a test) can wait for: the node is a cluster member, the API listens, an operator key exists.</summary>
public sealed class CoordinatorReadiness
{
    private readonly TaskCompletionSource<Uri> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes with the admin API's address once the node is fully up.</summary>
    public Task<Uri> ApiAddress => _ready.Task;

    internal void MarkReady(Uri api) => _ready.TrySetResult(api);

    internal void MarkFailed(Exception error) => _ready.TrySetException(error);
}

/// <summary>
/// Waits for Kestrel and cluster membership, installs the first operator key, and prints where the
/// API is. The key is printed to stdout once, at the first start of a new cluster, and never logged.
/// </summary>
public sealed class CoordinatorStartup(
    ActorSystem system,
    IServer server,
    IHostApplicationLifetime lifetime,
    IRequiredActor<ApiKeyRegistryActor> apiKeys,
    WeftSettings settings,
    CoordinatorReadiness readiness,
    TimeProvider clock,
    ILogger<CoordinatorStartup> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        try
        {
            var api = await WhenListening(stopping);
            await WhenMemberUp(stopping);
            var printedKey = await BootstrapOperatorKey(stopping);
            PrintBanner(api, printedKey);
            readiness.MarkReady(api);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            readiness.MarkFailed(new OperationCanceledException("the coordinator stopped before it was ready"));
        }
        catch (Exception e)
        {
            log.LogCritical(e, "Coordinator start-up failed");
            readiness.MarkFailed(e);
            lifetime.StopApplication();
        }
    }

    private async Task<Uri> WhenListening(CancellationToken stopping)
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var _ = lifetime.ApplicationStarted.Register(() => started.TrySetResult());
        await started.Task.WaitAsync(stopping);
        var address = server.Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault() ?? settings.Api.Listen;
        return new Uri(address);
    }

    private async Task WhenMemberUp(CancellationToken stopping)
    {
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Akka.Cluster.Cluster.Get(system).RegisterOnMemberUp(() => up.TrySetResult());
        await up.Task.WaitAsync(stopping);
        log.LogInformation("Joined the cluster as {Address}", Akka.Cluster.Cluster.Get(system).SelfAddress);
    }

    /// <summary>Returns the key to print, or null when none was generated here.</summary>
    private async Task<string?> BootstrapOperatorKey(CancellationToken stopping)
    {
        ApiKeyToken token;
        var configured = settings.BootstrapOperatorKey;
        if (!string.IsNullOrWhiteSpace(configured))
        {
            if (!ApiKeyToken.TryParse(configured, out token))
                throw new InvalidOperationException("Weft:BootstrapOperatorKey is not a valid Weft API key (weft_<10 chars>_<32 chars>, base32)");
        }
        else
        {
            token = ApiKeyToken.Generate();
        }

        while (true)
        {
            try
            {
                var result = await apiKeys.ActorRef.AskFor<OperatorKeyBootstrap>(
                    new BootstrapOperatorKey(token.KeyId, token.SecretHash, clock.GetUtcNow()), stopping);
                if (!result.Issued)
                {
                    log.LogInformation("An operator key already exists; none was issued");
                    return null;
                }
                log.LogInformation("Issued the first operator key {KeyId}", token.KeyId);
                return configured is null ? token.ToString() : null;
            }
            catch (ApiException e)
            {
                log.LogWarning("Operator key bootstrap not possible yet ({Reason}); retrying", e.Message);
                await Task.Delay(TimeSpan.FromSeconds(2), stopping);
            }
        }
    }

    private static void PrintBanner(Uri api, string? newOperatorKey)
    {
        var text = new System.Text.StringBuilder()
            .AppendLine()
            .AppendLine("Weft coordinator is up.")
            .AppendLine($"  admin API : {api}api/v1   (health: {api}healthz)");
        if (newOperatorKey is not null)
        {
            text.AppendLine("  operator key (shown only this once; store it now):")
                .AppendLine($"      {newOperatorKey}")
                .AppendLine("  next: export WEFT_API_KEY=<key>; weft tailnet create <name>");
        }
        Console.Out.WriteLine(text.ToString());
        Console.Out.Flush();
    }
}
