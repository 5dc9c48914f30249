using System.CommandLine;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using Serilog;
using Serilog.Extensions.Logging;
using Weft.Contracts.Keys;
using Weft.Contracts.Relay;

namespace Weft.Relay;

/// <summary>The <c>weft-relay</c> command line: one relay node (relay, mesh and STUN) until SIGTERM.</summary>
public static class RelayCommandLine
{
    public static RootCommand Build()
    {
        var root = new RootCommand("Weft relay: a DERP-style relay and STUN server for the nodes of a Weft cluster");
        var listen = new Option<string>("--listen") { Description = "TCP address for relay connections", DefaultValueFactory = _ => "0.0.0.0:3340" };
        var stun = new Option<string>("--stun") { Description = "UDP address of the STUN server, or 'off'", DefaultValueFactory = _ => "0.0.0.0:3478" };
        var keyFile = new Option<FileInfo>("--key-file") { Description = "The relay's private key (created on first start, mode 0600)", DefaultValueFactory = _ => new FileInfo("relay.key") };
        var issuers = new Option<string[]>("--ticket-issuer")
        {
            Description = "The cluster's ticket key, 'ed25519:<64 hex>' (the coordinator prints it; `weft relay issuer` shows it). Repeat to trust several while rolling keys.",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
        };
        var meshKey = new Option<string?>("--mesh-key") { Description = "The region's mesh key (64 hex), the same on every relay of the region" };
        var meshPeers = new Option<string[]>("--mesh-peer") { Description = "Another relay of the region (host:port or tls://host:port); repeat for each", AllowMultipleArgumentsPerToken = true };
        var tlsCert = new Option<FileInfo?>("--tls-cert") { Description = "PEM certificate: connections that start TLS get it" };
        var tlsKey = new Option<FileInfo?>("--tls-key") { Description = "PEM private key of --tls-cert" };
        var accessCheck = new Option<string[]>("--access-check-url")
        {
            Description = "A coordinator's API URL (e.g. https://coord1.example.net:8080); repeat for each. The relay asks it, at each login and every " +
                "--access-recheck-seconds for each live connection, whether the ticket's device still holds its node key, so that a deleted, expired " +
                "or rotated-away key is refused before its ticket expires. Without it the relay trusts the signature and expiry alone.",
            AllowMultipleArgumentsPerToken = true,
        };
        var recheck = new Option<int>("--access-recheck-seconds") { Description = "How often live connections are asked about again (0: logins only)", DefaultValueFactory = _ => 300 };
        var metricsListen = new Option<string?>("--metrics-listen")
        {
            Description = "IP:port for Prometheus metrics at /metrics (weft_relay_*: packets, drops, refusals, access checks); off by default",
        };
        foreach (var option in new Option[] { listen, stun, keyFile, issuers, meshKey, meshPeers, tlsCert, tlsKey, accessCheck, recheck, metricsListen }) root.Add(option);

        root.SetAction(async (parse, cancel) =>
        {
            using var logger = new LoggerConfiguration().WriteTo.Console(outputTemplate: "{Timestamp:HH:mm:ss.fff} {Level:u3} {Message:lj}{NewLine}{Exception}").CreateLogger();
            using var factory = new SerilogLoggerFactory(logger);
            var log = factory.CreateLogger("weft-relay");
            RelayOptions options;
            CoordinatorAccessCheck? coordinators = null;
            IPEndPoint? metricsEndpoint;
            try
            {
                metricsEndpoint = parse.GetValue(metricsListen) is { } metricsText ? ParseEndpoint(metricsText, "--metrics-listen") : null;
                var urls = parse.GetValue(accessCheck) ?? [];
                if (parse.GetValue(recheck) is < 0 or > 86_400) throw new FormatException("--access-recheck-seconds: between 0 (logins only) and 86400");
                if (urls.Length > 0) coordinators = new CoordinatorAccessCheck([.. urls.Select(CoordinatorAccessCheck.ParseCoordinator)]);
                options = new RelayOptions
                {
                    Listen = ParseEndpoint(parse.GetValue(listen)!, "--listen"),
                    Stun = parse.GetValue(stun) is "off" ? null : ParseEndpoint(parse.GetValue(stun)!, "--stun"),
                    ServerKey = LoadOrCreateKey(parse.GetValue(keyFile)!),
                    TicketIssuers = [.. parse.GetValue(issuers)!.Select(ParseIssuer)],
                    MeshKey = ParseMeshKey(parse.GetValue(meshKey)),
                    MeshPeers = [.. (parse.GetValue(meshPeers) ?? []).Select(RelayNodeAddress.Parse)],
                    Certificate = LoadCertificate(parse.GetValue(tlsCert), parse.GetValue(tlsKey)),
                    AccessCheck = coordinators is null ? null : coordinators.StillHaveAccessAsync,
                    AccessRecheckInterval = TimeSpan.FromSeconds(parse.GetValue(recheck)),
                };
            }
            catch (Exception e) when (e is FormatException or IOException or ArgumentException or System.Security.Cryptography.CryptographicException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
            if (options.MeshPeers.Count > 0 && options.MeshKey is null)
            {
                Console.Error.WriteLine("error: --mesh-peer needs --mesh-key");
                return 2;
            }
            using var ownedCoordinators = coordinators;
            MeterProvider? metrics;
            try
            {
                metrics = metricsEndpoint is null ? null : StartMetrics(metricsEndpoint);
            }
            catch (HttpListenerException e)
            {
                Console.Error.WriteLine($"error: cannot serve metrics on {metricsEndpoint}: {e.Message}");
                return 1;
            }
            using var ownedMetrics = metrics;
            await using var server = new RelayServer(options, log);
            try { server.Start(); }
            catch (System.Net.Sockets.SocketException e)
            {
                Console.Error.WriteLine($"error: cannot listen: {e.Message}");
                return 1;
            }
            Console.WriteLine($"weft-relay is up: relay {server.LocalEndpoint}, STUN {server.StunEndpoint?.ToString() ?? "off"}, key {KeyText.Format("relaykey:", server.ServerKey)}, " +
                (coordinators is null ? "access by ticket signature alone" : $"access checked with {string.Join(", ", parse.GetValue(accessCheck)!)}") +
                (metricsEndpoint is null ? "" : $", metrics http://{metricsEndpoint}/metrics"));
            var stopped = new TaskCompletionSource();
            using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => { context.Cancel = true; stopped.TrySetResult(); });
            await using var _ = cancel.Register(() => stopped.TrySetResult());
            await stopped.Task;
            return 0;
        });
        return root;
    }

    /// <summary>
    /// The relay's meter and the .NET runtime's (meter <c>System.Runtime</c>: GC heap and pauses, CPU time, working
    /// set, thread pool), as Prometheus text at /metrics on <paramref name="endpoint"/> (0.0.0.0 or :: is every address).
    /// </summary>
    private static MeterProvider StartMetrics(IPEndPoint endpoint) => Sdk.CreateMeterProviderBuilder()
        .AddMeter(RelayMetrics.MeterName, "System.Runtime")
        .AddPrometheusHttpListener(o =>
        {
            o.Host = endpoint.Address.Equals(IPAddress.Any) || endpoint.Address.Equals(IPAddress.IPv6Any) ? "*"
                : endpoint.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{endpoint.Address}]" : endpoint.Address.ToString();
            o.Port = endpoint.Port;
            o.ScrapeResponseCacheDurationMilliseconds = 0;
        })
        .Build();

    public static IPEndPoint ParseEndpoint(string text, string option) =>
        IPEndPoint.TryParse(text, out var endpoint) ? endpoint : throw new FormatException($"{option}: '{text}' is not an IP:port address");

    /// <summary>Reads <c>ed25519:&lt;64 hex&gt;</c>, the form the coordinator prints.</summary>
    public static NSec.Cryptography.PublicKey ParseIssuer(string text)
    {
        const string prefix = "ed25519:";
        var bytes = new byte[32];
        if (!text.StartsWith(prefix, StringComparison.Ordinal) || !KeyEncoding.TryDecodeHex(text[prefix.Length..], bytes))
            throw new FormatException($"--ticket-issuer: '{text}' is not ed25519:<64 hex>");
        return RelayTicket.IssuerKey(bytes);
    }

    private static string? ParseMeshKey(string? text)
    {
        if (text is null) return null;
        if (!KeyEncoding.TryDecodeHex(text, new byte[32])) throw new FormatException("--mesh-key: expected 64 hex characters");
        return text;
    }

    private static Curve25519PrivateKey LoadOrCreateKey(FileInfo file)
    {
        if (file.Exists)
        {
            var text = File.ReadAllText(file.FullName).Trim();
            return Curve25519PrivateKey.TryParseHex(text, out var key) ? key : throw new FormatException($"{file.FullName} does not hold a relay key (64 hex)");
        }
        var created = Curve25519PrivateKey.Generate();
        file.Directory?.Create();
        File.WriteAllText(file.FullName, created.ToHex() + "\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(file.FullName, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return created;
    }

    private static X509Certificate2? LoadCertificate(FileInfo? cert, FileInfo? key)
    {
        if (cert is null && key is null) return null;
        if (cert is null || key is null) throw new ArgumentException("--tls-cert and --tls-key go together");
        return X509Certificate2.CreateFromPemFile(cert.FullName, key.FullName);
    }
}
