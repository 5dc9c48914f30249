using System.CommandLine;
using NSec.Cryptography;
using Weft.Contracts.Relay;

namespace Weft.Relay.Tests;

/// <summary><c>weft-relay</c>'s flags for asking the cluster about access: refused with exit code 2 when malformed, run when well-formed.</summary>
public class RelayCommandLineTests
{
    [Fact]
    public async Task Access_check_urls_that_are_not_http_and_recheck_intervals_out_of_range_are_refused_and_good_ones_run()
    {
        var directory = Directory.CreateTempSubdirectory("weft-relay-cli-");
        try
        {
            using var signing = RelayTicket.SigningKey(RelayTicket.NewSigningSeed());
            string[] common =
            [
                "--listen", "127.0.0.1:0", "--stun", "off", "--key-file", Path.Combine(directory.FullName, "relay.key"),
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
                Assert.Equal(2, await RelayCommandLine.Build().Parse([.. common, .. bad]).InvokeAsync());
            Assert.False(File.Exists(Path.Combine(directory.FullName, "relay.key")), "refused before anything was made");

            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            var ran = await RelayCommandLine.Build()
                .Parse([.. common, "--access-check-url", "http://127.0.0.1:1", "--access-check-url", "https://coord2.example.net:8443/weft", "--access-recheck-seconds", "0"])
                .InvokeAsync(cancellationToken: stop.Token);
            Assert.Equal(0, ran);
            Assert.True(File.Exists(Path.Combine(directory.FullName, "relay.key")), "the relay started");
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
