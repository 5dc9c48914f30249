using System.Collections.Immutable;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Akka.Actor;
using Akka.Configuration;
using Akka.Discovery;
using Akka.Event;

namespace Weft.Cluster.Hosting;

/// <summary>
/// Finds this cluster's pods through the Kubernetes API, for cluster bootstrap: the running pods that
/// match the label selector, each with its IP and the container port the lookup names ("management").
/// It reads the pod's service account (token, CA, namespace) as every in-cluster client does.
/// <para>
/// Weft's own, rather than Akka.Discovery.KubernetesApi 1.5.73: that plugin is built against
/// KubernetesClient 17, and the package registry serves only 19 and later, whose model types changed
/// (a MissingMethodException at the first lookup). One GET of the pods list is all it needs.
/// </para>
/// </summary>
public sealed class KubernetesPodDiscovery : ServiceDiscovery
{
    public const string Method = "weft-kubernetes";

    private readonly ILoggingAdapter _log;
    private readonly Config _config;
    private readonly Lazy<HttpClient> _http;

    public KubernetesPodDiscovery(ExtendedActorSystem system, Config config)
    {
        _log = Logging.GetLogger(system, typeof(KubernetesPodDiscovery));
        _config = config;
        _http = new Lazy<HttpClient>(CreateClient);
    }

    private string Setting(string key) => _config.GetString(key, "");

    /// <summary>The API server: the configured URL, or the one Kubernetes gives every pod in its environment.</summary>
    private Uri ApiUrl()
    {
        var configured = Setting("api-url");
        if (configured.Length > 0) return new Uri(configured);
        var host = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST");
        var port = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_PORT");
        if (string.IsNullOrEmpty(host)) throw new InvalidOperationException("not running in Kubernetes: KUBERNETES_SERVICE_HOST is not set (or give Weft:Cluster:Kubernetes:ApiUrl)");
        return new Uri($"https://{(host.Contains(':') ? $"[{host}]" : host)}:{port ?? "443"}/");
    }

    public override async Task<Resolved> Lookup(Lookup lookup, TimeSpan resolveTimeout)
    {
        var space = Setting("pod-namespace");
        if (space.Length == 0) space = (await File.ReadAllTextAsync(Setting("namespace-path"))).Trim();
        var url = new Uri(ApiUrl(), $"api/v1/namespaces/{Uri.EscapeDataString(space)}/pods?labelSelector={Uri.EscapeDataString(Setting("pod-label-selector"))}");
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        var tokenPath = Setting("token-path");
        if (File.Exists(tokenPath)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", (await File.ReadAllTextAsync(tokenPath)).Trim());
        using var timeout = new CancellationTokenSource(resolveTimeout);
        using var response = await _http.Value.SendAsync(request, timeout.Token);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"listing pods failed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(timeout.Token)}");
        using var pods = await JsonDocument.ParseAsync(await response.Content.ReadAsStreamAsync(timeout.Token), cancellationToken: timeout.Token);
        var targets = Targets(pods.RootElement, lookup.PortName).ToImmutableList();
        _log.Debug("Pods of {0} found: {1}", lookup.ServiceName, string.Join(", ", targets));
        return new Resolved(lookup.ServiceName, targets);
    }

    /// <summary>Running pods, not being deleted, with an IP (and the named port, when one is asked for).</summary>
    public static IEnumerable<ResolvedTarget> Targets(JsonElement podList, string? portName)
    {
        if (!podList.TryGetProperty("items", out var items) || items.ValueKind != JsonValueKind.Array) yield break;
        foreach (var pod in items.EnumerateArray())
        {
            if (pod.TryGetProperty("metadata", out var metadata) && metadata.TryGetProperty("deletionTimestamp", out var deleting) && deleting.ValueKind != JsonValueKind.Null) continue;
            if (!pod.TryGetProperty("status", out var status)) continue;
            if (!status.TryGetProperty("phase", out var phase) || phase.GetString() != "Running") continue;
            if (!status.TryGetProperty("podIP", out var ipText) || !IPAddress.TryParse(ipText.GetString(), out var ip)) continue;
            int? port = null;
            if (!string.IsNullOrEmpty(portName))
            {
                port = Ports(pod).Where(p => p.Name == portName).Select(p => (int?)p.Number).FirstOrDefault();
                if (port is null) continue;
            }
            yield return new ResolvedTarget(ip.ToString(), port, ip);
        }
    }

    private static IEnumerable<(string Name, int Number)> Ports(JsonElement pod)
    {
        if (!pod.TryGetProperty("spec", out var spec) || !spec.TryGetProperty("containers", out var containers)) yield break;
        foreach (var container in containers.EnumerateArray())
        {
            if (!container.TryGetProperty("ports", out var ports)) continue;
            foreach (var port in ports.EnumerateArray())
                if (port.TryGetProperty("name", out var name) && port.TryGetProperty("containerPort", out var number))
                    yield return (name.GetString() ?? "", number.GetInt32());
        }
    }

    /// <summary>TLS to the API server, trusting the cluster's CA (from the service account) and nothing else.</summary>
    private HttpClient CreateClient()
    {
        var handler = new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) };
        var caPath = Setting("ca-path");
        if (File.Exists(caPath))
        {
            var ca = X509CertificateLoader.LoadCertificateFromFile(caPath);
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                {
                    if (certificate is null) return false;
                    if (errors == SslPolicyErrors.None) return true;
                    using var chain = new X509Chain();
                    chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                    chain.ChainPolicy.CustomTrustStore.Add(ca);
                    chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                    return chain.Build(new X509Certificate2(certificate));
                },
            };
        }
        return new HttpClient(handler);
    }
}
