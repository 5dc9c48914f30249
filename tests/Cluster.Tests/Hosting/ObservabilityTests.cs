using System.Globalization;
using System.Net.Http.Json;
using System.Net;
using System.Text.RegularExpressions;
using Akka.Actor;
using Microsoft.Extensions.DependencyInjection;
using Weft.Cluster.Tests.Support;
using Weft.ClusterLab;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Hosting;

/// <summary>
/// What an operator watches: <c>/metrics</c> (Prometheus text from OpenTelemetry's exporter), the
/// health endpoints (the libraries' checks through MapHealthChecks), and the logs (no secret in them).
/// Alone in their collection: the coordinator's instruments and activity source are per process, so a
/// coordinator of a test running beside these would move their counters and spans.
/// </summary>
[Collection(ProcessTelemetry.Name)]
public sealed partial class ObservabilityTests
{
    [Fact]
    public async Task Metrics_are_prometheus_text_and_each_moves_with_the_action_that_should_move_it()
    {
        await using var storage = TestStorage.NewSqlite();
        // Machine entities passivate after 2 s idle here (1 min shipped): a passivation to count.
        using var tuning = TestTuning.With("weft.sharding.machine-passivate-idle-after = 2s");
        await using var coordinator = await TestCoordinator.StartAsync(storage, [tuning.Setting]);
        await using var agents = new AgentSystem();
        var anonymous = TestCoordinator.NewClient(coordinator.Api, apiKey: null);
        var before = await Scrape(anonymous);

        var tailnet = await coordinator.Http.CreateTailnet("metrics");
        await coordinator.Http.DefineTags(tailnet.Id, "tag:metrics");
        var key = await coordinator.Http.CreateAuthKey(tailnet.Id, reusable: true);
        using var first = TestAgent.Start(agents, coordinator.Control, "metrics-one", key.Key);
        using var second = TestAgent.Start(agents, coordinator.Control, "metrics-two", key.Key);
        await first.WaitForPeers(second);
        await second.WaitForPeers(first);

        var tailnetLabel = $"tailnet=\"{tailnet.Id}\"";
        var after = await Eventually.Until(() => Scrape(anonymous),
            m => m.Value("weft_sharding_entities", "entity=\"tailnet\"") >= 1 && m.Value("weft_sharding_entities", "entity=\"device\"") >= 2,
            "the sharding gauges count the new tailnet and devices (they are sampled every 10 s)");

        // Two agents registered here, in this tailnet.
        Assert.Equal(2, after.Value("weft_agents_connected", tailnetLabel));
        // Each received its netmap; bytes went with them. A rename sends the peer a delta.
        var deltas = after.Value("weft_netmap_deltas_sent_total", tailnetLabel);
        Assert.True(deltas >= 2, after.Lines("weft_netmap_deltas_sent_total"));
        Assert.True(after.Value("weft_netmap_delta_bytes_total", tailnetLabel) > deltas);
        var device = (await coordinator.Http.ListDevices(tailnet.Id)).Devices.Single(d => d.Hostname == "metrics-two");
        await (await coordinator.Http.PostJson($"/api/v1/tailnets/{tailnet.Id}/devices/{device.Id}/rename", new { name = "metrics-renamed" })).ReadAs<DeviceResource>(HttpStatusCode.OK);
        await first.WaitForNetMap(view => view.Peers.Values.Any(p => p.Name.StartsWith("metrics-renamed", StringComparison.Ordinal)), "the rename");
        Assert.True((await Scrape(anonymous)).Value("weft_netmap_deltas_sent_total", tailnetLabel) > deltas);
        // The tailnet's writes went through the journal; the devices' entities started; the policy compiled.
        Assert.True(after.Value("weft_journal_write_duration_seconds_count", "entity=\"tailnet\"") > before.Value("weft_journal_write_duration_seconds_count", "entity=\"tailnet\""));
        Assert.True(after.Value("weft_entities_started_total", "entity=\"device\"") >= before.Value("weft_entities_started_total", "entity=\"device\"") + 2);
        Assert.True(after.Value("weft_policy_compile_duration_seconds_count") > before.Value("weft_policy_compile_duration_seconds_count"));
        // Both registrations were counted as authorized, and each timed its steps: a first join looks the
        // machine up, registers with the tailnet, binds the machine and starts the device's entity.
        Assert.True(after.Value("weft_registrations_total", "result=\"authorized\"") >= before.Value("weft_registrations_total", "result=\"authorized\"") + 2,
            after.Lines("weft_registrations_total"));
        foreach (var step in new[] { "machine_lookup", "tailnet_register", "machine_bind", "device_init" })
            Assert.True(after.Value("weft_registration_step_duration_seconds_count", $"step=\"{step}\"") >= before.Value("weft_registration_step_duration_seconds_count", $"step=\"{step}\"") + 2,
                after.Lines("weft_registration_step_duration_seconds_count"));
        // The runtime's own instruments: the GC heap and the process's memory, to size a node by.
        Assert.True(after.Value("dotnet_gc_heap_total_allocated_bytes_total") > 0, after.Lines("dotnet_gc"));
        Assert.True(after.Value("dotnet_process_memory_working_set_bytes") > 0, after.Lines("dotnet_process"));
        // Admin API requests by route and status (ASP.NET Core's own instrument).
        Assert.True(after.Value("http_server_request_duration_seconds_count", "http_response_status_code=\"201\"", "http_route=\"/api/v1/tailnets/\"") >= 1,
            after.Lines("http_server_request_duration_seconds_count"));

        // Idle machine entities passivate, and are counted stopped.
        await Eventually.Until(() => Scrape(anonymous),
            m => m.Value("weft_entities_stopped_total", "entity=\"machine-index\"") >= before.Value("weft_entities_stopped_total", "entity=\"machine-index\"") + 1,
            "an idle machine entity passivated");

        // An agent that leaves is no longer counted.
        await second.Stop();
        await Eventually.Until(() => Scrape(anonymous), m => m.Value("weft_agents_connected", tailnetLabel) == 1, "the departed agent is no longer connected");
    }

    [Fact]
    public async Task A_trace_follows_an_admin_call_through_the_tailnet_entity_to_the_netmap_fan_out_it_causes()
    {
        // Every span this process ends (other tests' included): this test finds its own by trace id.
        var spans = new System.Collections.Concurrent.ConcurrentQueue<System.Diagnostics.Activity>();
        using var listener = new System.Diagnostics.ActivityListener
        {
            ShouldListenTo = source => source.Name is Telemetry.CoordinatorTracing.SourceName or "Microsoft.AspNetCore",
            Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) => System.Diagnostics.ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Enqueue,
        };
        System.Diagnostics.ActivitySource.AddActivityListener(listener);
        await using var storage = TestStorage.NewSqlite();
        await using var coordinator = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        var tailnet = await coordinator.Http.CreateTailnet("traced");
        var key = await coordinator.Http.CreateAuthKey(tailnet.Id, reusable: true);
        using var first = TestAgent.Start(agents, coordinator.Control, "traced-one", key.Key);
        using var second = TestAgent.Start(agents, coordinator.Control, "traced-two", key.Key);
        await first.WaitForPeers(second);
        var device = (await coordinator.Http.ListDevices(tailnet.Id)).Devices.Single(d => d.Hostname == "traced-two");

        // The caller's own trace context, as a traced client (or a proxy) would send it.
        var traceId = System.Diagnostics.ActivityTraceId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/v1/tailnets/{tailnet.Id}/devices/{device.Id}/rename")
        {
            Content = JsonContent.Create(new { name = "traced-renamed" }),
        };
        request.Headers.Add("traceparent", $"00-{traceId}-{System.Diagnostics.ActivitySpanId.CreateRandom()}-01");
        (await coordinator.Http.SendAsync(request)).EnsureSuccessStatusCode();
        await first.WaitForNetMap(view => view.Peers.Values.Any(p => p.Name.StartsWith("traced-renamed", StringComparison.Ordinal)), "the rename");

        var trace = await Eventually.Until(() => Task.FromResult(spans.Where(s => s.TraceId == traceId).ToList()),
            t => t.Any(s => s.OperationName == "tailnet netmap fan-out") && t.Any(s => s.Source.Name == "Microsoft.AspNetCore"),
            "the request's and the fan-out's spans end (the server ends its span after the client has the answer)");
        var http = Assert.Single(trace, s => s.Source.Name == "Microsoft.AspNetCore");
        var command = Assert.Single(trace, s => s.OperationName == "tailnet tailnet.rename-device");
        var fanOut = Assert.Single(trace, s => s.OperationName == "tailnet netmap fan-out");
        Assert.Equal(http.SpanId, command.ParentSpanId);
        Assert.EndsWith(tailnet.Id, (string)command.GetTagItem("weft.entity.id")!);
        Assert.Equal(command.SpanId, fanOut.ParentSpanId);
        Assert.True((int)fanOut.GetTagItem("weft.recipients")! >= 1);
    }

    [Fact]
    public async Task Liveness_is_the_actor_system_check_and_healthz_keeps_the_cluster_view()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var coordinator = await TestCoordinator.StartAsync(storage);
        var anonymous = TestCoordinator.NewClient(coordinator.Api, apiKey: null);

        var live = await (await anonymous.GetAsync("/healthz/live")).ReadAs<ReadinessReport>(HttpStatusCode.OK);
        Assert.True(live.Ready);
        Assert.Equal(["akka.actorsystem"], live.Checks.Select(c => c.Name));
        var cluster = await (await anonymous.GetAsync("/healthz")).ReadAs<HealthReport>(HttpStatusCode.OK);
        Assert.Equal("up", cluster.Status);
    }

    [Fact]
    public async Task No_secret_reaches_the_logs_even_at_the_most_detailed_level()
    {
        var data = Directory.CreateTempSubdirectory("weft-log-capture-");
        try
        {
            await using var node = new CoordinatorNode("logged", [], new Dictionary<string, string>
            {
                ["Weft__Storage__DataDirectory"] = data.FullName,
                ["Serilog__MinimumLevel__Default"] = "Verbose",
            });
            node.Start();
            await node.WhenReady(TimeSpan.FromSeconds(90));
            using var http = TestCoordinator.NewClient(node.Api, LabKeys.OperatorKey);
            await using var agents = new AgentSystem();

            var tailnet = await http.CreateTailnet("secrets");
            var authKey = await http.CreateAuthKey(tailnet.Id, reusable: true);
            var apiKey = await (await http.PostJson("/api/v1/api-keys", new { scope = "tailnet", tailnet = tailnet.Id, description = "log test" }))
                .ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);
            using var tenant = TestCoordinator.NewClient(node.Api, apiKey.Key);
            await tenant.ListDevices(tailnet.Id);
            using var agent = TestAgent.Start(agents, node.Control, "logged-box", authKey.Key);
            await agent.WaitForState(NodeAgent.Control.ControlState.Running);
            // A wrong key is refused; the refusal must not echo it either.
            using var wrong = TestCoordinator.NewClient(node.Api, apiKey.Key[..^4] + "aaaa");
            await (await wrong.GetAsync("/api/v1/tailnets")).ReadError(HttpStatusCode.Unauthorized);
            await node.Terminate(TimeSpan.FromSeconds(30));

            var log = node.Output;
            Assert.Contains("Weft coordinator is up", log);
            Assert.Contains("tailnet=", log); // events about one tailnet or device say which (and were logged at all)
            var secrets = new Dictionary<string, string>
            {
                ["operator key"] = LabKeys.OperatorKey,
                ["operator key secret"] = LabKeys.OperatorKey.Split('_')[2],
                ["auth key"] = authKey.Key,
                ["auth key secret"] = authKey.Key.Split('.')[^1],
                ["API key secret"] = apiKey.Key.Split('_')[2],
                ["refused API key secret"] = (apiKey.Key[..^4] + "aaaa").Split('_')[2],
                ["cluster secret"] = File.ReadAllText(Path.Combine(data.FullName, "cluster.secret")).Trim(),
            };
            foreach (var (what, secret) in secrets) Assert.False(log.Contains(secret, StringComparison.Ordinal), $"the {what} appears in the log");
        }
        finally
        {
            data.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task The_canary_measures_propagation_and_is_replaced_when_its_agent_is_killed_and_found_again_after_a_restart()
    {
        await using var storage = TestStorage.NewSqlite();
        KeyValuePair<string, string?>[] withCanary = [new("Weft:Telemetry:Canary", "true"), new("Weft:Telemetry:CanaryIntervalSeconds", "0.5")];
        const string delivered = "outcome=\"delivered\"";
        string canaryTailnet;
        await using (var coordinator = await TestCoordinator.StartAsync(storage, withCanary))
        {
            var anonymous = TestCoordinator.NewClient(coordinator.Api, apiKey: null);
            var measured = await Eventually.Until(() => Scrape(anonymous),
                m => m.Value("weft_canary_probes_total", delivered) >= 3 && m.Value("weft_canary_propagation_duration_seconds_count") >= 3,
                "the canary's changes reach its peer and are timed");
            Assert.True(measured.Value("weft_canary_propagation_duration_seconds_sum") > 0);

            // Its tailnet is the operator's to see: two ephemeral devices online, the key that registered them revoked.
            canaryTailnet = Assert.Single((await coordinator.Http.ListTailnets()).Tailnets, t => t.Name == "weft-canary").Id;
            var devices = (await coordinator.Http.ListDevices(canaryTailnet)).Devices;
            Assert.Equal(2, devices.Count);
            Assert.All(devices, d => Assert.True(d.Online && d.Ephemeral && d.Os == "weft-canary"));
            var keys = await (await coordinator.Http.GetAsync($"/api/v1/tailnets/{canaryTailnet}/auth-keys")).ReadAs<AuthKeyListResource>(HttpStatusCode.OK);
            Assert.All(keys.AuthKeys, k => Assert.True(k.Revoked));

            // Kill the sending agent: its changes stop arriving, the canary counts them missed, and a new pair measures again.
            var system = coordinator.Services.GetRequiredService<ActorSystem>();
            var sender = await system.ActorSelection("/user/weft-canary-1-a").ResolveOne(TimeSpan.FromSeconds(5));
            system.Stop(sender);
            var deliveredBefore = (await Scrape(anonymous)).Value("weft_canary_probes_total", delivered);
            await Eventually.Until(() => Scrape(anonymous), m => m.Value("weft_canary_probes_total", "outcome=\"missed\"") >= 3, "the killed agent's changes counted missed");
            await Eventually.Until(() => Scrape(anonymous), m => m.Value("weft_canary_probes_total", delivered) >= deliveredBefore + 3,
                "a new canary pair delivers again");
            await system.ActorSelection("/user/weft-canary-2-a").ResolveOne(TimeSpan.FromSeconds(5)); // the second pair
            await Assert.ThrowsAsync<ActorNotFoundException>(() => system.ActorSelection("/user/weft-canary-1-b").ResolveOne(TimeSpan.FromSeconds(1)));
            // The new pair is online; the old receiver logged out, and the killed sender waits for its ephemeral timeout.
            var online = (await coordinator.Http.ListDevices(canaryTailnet)).Devices.Where(d => d.Online).ToList();
            Assert.Equal(2, online.Count);
        }

        // A restarted node finds its canary tailnet again (no second one) and measures.
        await using var restarted = await TestCoordinator.StartAsync(storage, withCanary);
        var client = TestCoordinator.NewClient(restarted.Api, apiKey: null);
        await Eventually.Until(() => Scrape(client), m => m.Value("weft_canary_probes_total", delivered) >= 1, "the restarted node's canary delivers");
        Assert.Equal(canaryTailnet, Assert.Single((await restarted.Http.ListTailnets()).Tailnets, t => t.Name == "weft-canary").Id);
    }

    private static async Task<Scraped> Scrape(HttpClient http)
    {
        using var response = await http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType);
        return Scraped.Parse(await response.Content.ReadAsStringAsync());
    }

    /// <summary>Prometheus text exposition, checked line by line as it is parsed.</summary>
    private sealed partial class Scraped
    {
        private readonly List<(string Name, string Labels, double Value)> _samples = [];
        private readonly string _text;

        private Scraped(string text) => _text = text;

        public static Scraped Parse(string text)
        {
            var scraped = new Scraped(text);
            var described = new HashSet<string>();
            foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
                {
                    var parts = line.Split(' ');
                    Assert.Contains(parts[3], new[] { "counter", "gauge", "histogram", "summary", "untyped" });
                    described.Add(parts[2]);
                    continue;
                }
                if (line.StartsWith('#')) continue;
                var match = SampleLine().Match(line);
                Assert.True(match.Success, $"not a Prometheus sample line: {line}");
                var name = match.Groups["name"].Value;
                Assert.Contains(described, family => name == family || name.StartsWith(family + "_", StringComparison.Ordinal));
                scraped._samples.Add((name, match.Groups["labels"].Value, double.Parse(match.Groups["value"].Value.Replace("+Inf", "Infinity"), CultureInfo.InvariantCulture)));
            }
            return scraped;
        }

        /// <summary>The sum of a metric's samples whose labels contain every given <c>key="value"</c>.</summary>
        public double Value(string name, params string[] labels) =>
            _samples.Where(s => s.Name == name && labels.All(l => s.Labels.Contains(l, StringComparison.Ordinal))).Sum(s => s.Value);

        /// <summary>Weft's own samples, for a failure message.</summary>
        public override string ToString() => Lines("weft_");

        public string Lines(string name) => string.Join("\n", _text.Split('\n').Where(l => l.StartsWith(name, StringComparison.Ordinal)));

        [GeneratedRegex("""^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (?<value>[-+]?(?:[0-9.eE+-]+|Inf|NaN))( [0-9]+)?$""")]
        private static partial Regex SampleLine();
    }
}

/// <summary>Tests that read the process-wide meters and activity sources run with no other test beside them.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessTelemetry
{
    public const string Name = "process telemetry";
}
