using System.Diagnostics;
using System.Runtime.Versioning;
using Akka.Actor;
using Akka.Hosting;
using Weft.Cluster.Api;
using Weft.Cluster.Hosting;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;
using Weft.Contracts.Control;
using Weft.NodeAgent.Control;

namespace Weft.Cluster.Telemetry;

/// <summary>
/// Measures what an operator cannot see from the inside: how long a device's change takes to reach
/// its peers. Each node runs two agents of its own (the agent's real <see cref="ControlClient"/>,
/// no data plane) in the tailnet <c>weft-canary</c>, connected to this node's control listener:
/// every interval, one reports a new endpoint, and the time until the other holds it is
/// <c>weft.canary.propagation.duration</c>. The changes take the whole path an agent's do: the
/// control stream, the device and tailnet entities, the journal, the fan-out and the delta.
/// <para>
/// The service owns the pair and re-creates it: after <see cref="MissesBeforeReplacing"/> probes in a
/// row that never arrived (an agent stopped, its device was removed, the stream is stuck) it logs the
/// pair out and starts a new one with a new key; after a node restart it finds the tailnet again. The
/// devices are ephemeral, and the key that registered them is revoked once both have joined.
/// </para>
/// </summary>
[SupportedOSPlatform("linux")] // the agent's code is Linux's, as the coordinator is
public sealed class PropagationCanary(
    ActorSystem system,
    CoordinatorReadiness readiness,
    IRequiredActor<TailnetDirectoryActor> directory,
    IRequiredActor<TailnetActor> tailnets,
    StorageProbe storage,
    TelemetrySettings settings,
    string nodeName,
    TimeProvider clock,
    ILogger<PropagationCanary> log) : BackgroundService
{
    /// <summary>The tailnet where every node's canary pair lives (operators see it; tenants do not).</summary>
    public const string TailnetName = "weft-canary";

    /// <summary>A canary device gone this long (its node stopped without logging it out) is removed.</summary>
    public const int EphemeralTimeoutSeconds = 60;

    public const int MissesBeforeReplacing = 3;
    private static readonly TimeSpan JoinTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan RetryPause = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan LogoutTimeout = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan KeyLifetime = TimeSpan.FromMinutes(10);
    private static readonly KeyValuePair<string, object?> Delivered = new("outcome", "delivered");
    private static readonly KeyValuePair<string, object?> Missed = new("outcome", "missed");

    private int _generation;

    public static void Register(IServiceCollection services, TelemetrySettings settings, string nodeName) =>
        services.AddHostedService(s => ActivatorUtilities.CreateInstance<PropagationCanary>(s, settings, nodeName));

    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        var control = Reachable((await readiness.Endpoints.WaitAsync(stopping)).Control);
        var interval = TimeSpan.FromSeconds(settings.CanaryIntervalSeconds);
        // One interval after the start: the start-up banner stays the last thing a new operator reads.
        await Task.Delay(interval, stopping);
        while (!stopping.IsCancellationRequested)
        {
            CanaryPair? pair = null;
            try
            {
                pair = await StartPairAsync(control, stopping);
                log.LogDebug("Propagation canary {Generation} measuring through {Control} in tailnet {CanaryTailnet}", pair.Generation, control, TailnetName);
                await MeasureUntilStalledAsync(pair, interval, stopping);
                log.LogWarning("Propagation canary {Generation}: {Misses} changes in a row never reached its peer; starting a new pair", pair.Generation, MissesBeforeReplacing);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                log.LogWarning("Propagation canary could not start: {Reason}; trying again in {Pause} s", e.Message, RetryPause.TotalSeconds);
            }
            finally
            {
                if (pair is not null) await pair.LogOutAndStopAsync(system);
            }
            try
            {
                await Task.Delay(RetryPause, stopping);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task MeasureUntilStalledAsync(CanaryPair pair, TimeSpan interval, CancellationToken stopping)
    {
        var missesInARow = 0;
        using var timer = new PeriodicTimer(interval, clock);
        while (missesInARow < MissesBeforeReplacing)
        {
            if (pair.Probe() is { Delivered: false })
            {
                CoordinatorMetrics.CanaryProbes.Add(1, Missed);
                missesInARow++;
            }
            else
            {
                missesInARow = 0;
            }
            await timer.WaitForNextTickAsync(stopping);
        }
    }

    /// <summary>Finds or creates the canary tailnet, registers two devices with a fresh key, and waits until the second holds the first.</summary>
    private async Task<CanaryPair> StartPairAsync(Uri control, CancellationToken stopping)
    {
        var tailnetId = await FindOrCreateTailnetAsync(stopping);
        var now = clock.GetUtcNow();
        var token = AuthKeyToken.Generate(tailnetId);
        var generation = Interlocked.Increment(ref _generation);
        await tailnets.ActorRef.AskFor<AuthKeyInfo>(new CreateAuthKey(tailnetId, token.KeyId, token.SecretHash, UserId: null, Reusable: true, Ephemeral: true,
            [], now + KeyLifetime, $"propagation canary of {nodeName}", now), stopping, storage, system: system);

        var pair = new CanaryPair(generation);
        var hostname = TailnetRules.DeviceNameFrom(nodeName);
        try
        {
            // The sender first: the receiver's first netmap then holds it.
            pair.Sender = system.ActorOf(ControlClient.PropsFor(Options(control, token.ToString(), $"canary-{hostname}-a", pair.ObserveSender)), $"weft-canary-{generation}-a");
            await pair.SenderJoined.WaitAsync(JoinTimeout, stopping);
            pair.Receiver = system.ActorOf(ControlClient.PropsFor(Options(control, token.ToString(), $"canary-{hostname}-b", pair.ObserveReceiver)), $"weft-canary-{generation}-b");
            await pair.Joined.WaitAsync(JoinTimeout, stopping);
        }
        catch
        {
            await pair.LogOutAndStopAsync(system);
            throw;
        }
        // Both are registered: the key has done its work. A device removed later gets a new pair, and a new key.
        await tailnets.ActorRef.AskFor<AuthKeyInfo>(new RevokeAuthKey(tailnetId, token.KeyId), stopping, storage, system: system);
        return pair;
    }

    private async Task<string> FindOrCreateTailnetAsync(CancellationToken stopping)
    {
        while (true)
        {
            try
            {
                return (await directory.ActorRef.AskFor<TailnetEntry>(new FindTailnet(TailnetName), stopping, storage, system: system)).TailnetId;
            }
            catch (ApiException e) when (e.Code == ApiErrorCodes.NotFound)
            {
            }
            try
            {
                var settings = TailnetRules.DefaultSettings(TailnetName) with { EphemeralTimeoutSeconds = EphemeralTimeoutSeconds };
                var registered = await directory.ActorRef.AskFor<TailnetRegistered>(
                    new RegisterTailnet(Identifiers.NewTailnetId(), TailnetName, settings, clock.GetUtcNow()), stopping, storage, system: system);
                log.LogDebug("Created tailnet {CanaryTailnet} ({TailnetId}) for the propagation canaries", TailnetName, registered.Entry.TailnetId);
                return registered.Entry.TailnetId;
            }
            catch (ApiException e) when (e.Code == ApiErrorCodes.Conflict)
            {
                // Another node created it at the same moment: find it again.
            }
        }
    }

    /// <summary>The control listener as this node reaches it: a wildcard address is dialled on loopback.</summary>
    private static Uri Reachable(Uri listener) => listener.Host switch
    {
        "0.0.0.0" => new UriBuilder(listener) { Host = "127.0.0.1" }.Uri,
        "[::]" => new UriBuilder(listener) { Host = "[::1]" }.Uri,
        _ => listener,
    };

    private ControlClientOptions Options(Uri control, string authKey, string hostname, Action<ServerMessage, NetMapApplied, NetMapStore> observer) => new()
    {
        Coordinators = [control],
        StateStore = new MemoryAgentStateStore(),
        Hostname = hostname,
        AuthKey = authKey,
        Os = "weft-canary",
        Observer = observer,
    };

    /// <summary>
    /// One pair: the sender reports endpoints, the receiver's observer (on its actor's thread) notes
    /// when its store holds the sender's latest one.
    /// </summary>
    private sealed class CanaryPair(int generation)
    {
        private readonly TaskCompletionSource _joined = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _senderJoined = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private volatile string? _senderId;
        private volatile ProbeInFlight? _inFlight;
        private int _sequence;

        public int Generation { get; } = generation;
        public IActorRef Sender { get; set; } = ActorRefs.Nobody;
        public IActorRef Receiver { get; set; } = ActorRefs.Nobody;

        /// <summary>Completes when the sender has its first netmap (and so its device id).</summary>
        public Task SenderJoined => _senderJoined.Task;

        /// <summary>Completes when the receiver holds the sender as a peer.</summary>
        public Task Joined => _joined.Task;

        /// <summary>Sends the next change, and returns the one before it (null at the first).</summary>
        public ProbeInFlight? Probe()
        {
            var sequence = Interlocked.Increment(ref _sequence);
            var endpoint = ChangeEndpoint.For(sequence); // in 198.18.0.0/15: never routed, and no agent dials a canary
            var previous = Interlocked.Exchange(ref _inFlight, new ProbeInFlight(endpoint, Stopwatch.GetTimestamp()));
            Sender.Tell(new SetEndpoints([endpoint], 0));
            return previous;
        }

        /// <summary>The sender's observer: learns its device id from its first netmap.</summary>
        public void ObserveSender(ServerMessage message, NetMapApplied applied, NetMapStore store)
        {
            if (_senderId is not null || store.Self is not { } self) return;
            _senderId = self.Id;
            _senderJoined.TrySetResult();
        }

        /// <summary>The receiver's observer: joined once it holds the sender, and each probe delivered once it holds its endpoint.</summary>
        public void ObserveReceiver(ServerMessage message, NetMapApplied applied, NetMapStore store)
        {
            if (_senderId is not { } senderId || !store.TryGetPeer(senderId, out var sender)) return;
            _joined.TrySetResult();
            if (_inFlight is { Delivered: false } probe && sender.Endpoints.Contains(probe.Endpoint) && probe.MarkDelivered())
                CoordinatorMetrics.CanaryPropagationDuration.Record(CoordinatorMetrics.SecondsSince(probe.SentAt));
        }

        public async Task LogOutAndStopAsync(ActorSystem system)
        {
            foreach (var agent in new[] { Sender, Receiver }.Where(a => !a.IsNobody()))
            {
                try
                {
                    await agent.Ask<LogoutResult>(LogOut.Instance, LogoutTimeout);
                }
                catch (Exception)
                {
                    // Stopped already, or the stream is down: the ephemeral device goes after its timeout.
                }
                system.Stop(agent);
            }
        }
    }

    private sealed class ProbeInFlight(string endpoint, long sentAt)
    {
        private int _delivered;

        public string Endpoint { get; } = endpoint;
        public long SentAt { get; } = sentAt;
        public bool Delivered => Volatile.Read(ref _delivered) == 1;

        public bool MarkDelivered()
        {
            if (Interlocked.Exchange(ref _delivered, 1) != 0) return false;
            CoordinatorMetrics.CanaryProbes.Add(1, PropagationCanary.Delivered);
            return true;
        }
    }
}
