using System.CommandLine;
using NSec.Cryptography;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay.Tests;

/// <summary><c>weft-relay</c>'s flags for asking the cluster about access and serving metrics: refused with exit code 2 when malformed, run when well-formed.</summary>
public class RelayCommandLineTests
{

    [Fact]
    public async Task Access_check_urls_that_are_not_http_recheck_intervals_out_of_range_and_bad_metrics_addresses_are_refused_and_good_ones_run_and_serve_metrics()
    {
        var directory = Directory.CreateTempSubdirectory("weft-relay-cli-");
        try
        {
            using var signing = RelayTicket.SigningKey(RelayTicket.NewSigningSeed());
            string[] common =
            [
                "--stun", "off", "--key-file", Path.Combine(directory.FullName, "relay.key"),
                "--ticket-issuer", "ed25519:" + Convert.ToHexStringLower(signing.PublicKey.Export(KeyBlobFormat.RawPublicKey)),
            ];
            foreach (var bad in new[]
            {
                new[] { "--access-check-url", "ftp://coord1.example.net:8080" },
                ["--access-check-url", "coord1.example.net:8080"],
                ["--access-check-url", "http://coord1.example.net:8080/?x=1"],
                ["--access-recheck-seconds", "-1"],
                ["--access-recheck-seconds", "86401"],
            })
                Assert.Equal(2, await RelayCommandLine.Build().Parse([.. common, "--listen", "127.0.0.1:0", .. bad]).InvokeAsync());
            Assert.False(File.Exists(Path.Combine(directory.FullName, "relay.key")), "refused before anything was made");

            Assert.Equal(2, await RelayCommandLine.Build().Parse([.. common, "--listen", "127.0.0.1:0", "--metrics-listen", "localhost:9464"]).InvokeAsync());

            // A good set runs until stopped, and serves its counts and the runtime's at /metrics.
            var (relayPort, metricsPort) = (RelayLab.FreePort(), RelayLab.FreePort());
            using var stop = new CancellationTokenSource();
            var running = RelayCommandLine.Build()
                .Parse([.. common, "--listen", $"127.0.0.1:{relayPort}", "--metrics-listen", $"127.0.0.1:{metricsPort}",
                    "--access-check-url", "http://127.0.0.1:1", "--access-check-url", "https://coord2.example.net:8443/weft", "--access-recheck-seconds", "0"])
                .InvokeAsync(cancellationToken: stop.Token);
            using var http = new HttpClient();
            string? scraped = null;
            for (var attempt = 0; attempt < 100 && scraped is null && !running.IsCompleted; attempt++)
            {
                try
                {
                    using var login = Curve25519PrivateKey.Generate();
                    await Assert.ThrowsAsync<RelayProtocolException>(() =>
                        RelayClientConnection.ConnectAsync(new RelayNodeAddress("127.0.0.1", relayPort), login, new ClientInfo(), CancellationToken.None));
                    var text = await http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics");
                    if (text.Contains("weft_relay_refused_total{") && text.Contains("reason=\"ticket_missing\"")) scraped = text;
                }
                catch (Exception e) when (e is HttpRequestException or IOException or System.Net.Sockets.SocketException) { }
                if (scraped is null) await Task.Delay(100);
            }
            if (running.IsCompleted) Assert.Fail($"the relay stopped on its own (exit code {await running})");
            Assert.NotNull(scraped);
            // The runtime's own instruments come with the relay's, to size the process.
            Assert.Contains("dotnet_process_memory_working_set_bytes", scraped);
            Assert.Contains("dotnet_gc_heap_total_allocated_bytes_total", scraped);
            await stop.CancelAsync();
            Assert.Equal(0, await running);
            Assert.True(File.Exists(Path.Combine(directory.FullName, "relay.key")), "the relay made its key");
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
