using System.Security.Cryptography;
using System.Text;
using Weft.Cluster.Hosting;

namespace Weft.Cluster.Identity;

/// <summary>
/// The web addresses of interactive login: a device's login link
/// (<c>{PublicUrl}/login/{tailnet id}/{login id}.{mac}</c>) and each tailnet's redirect URI at its
/// provider (<c>{PublicUrl}/login/oidc/{tailnet id}/callback</c>). The link's secret part is a MAC of
/// the tailnet and login id under a key derived from the cluster secret: every node makes and checks
/// the same link, and the store holds nothing that opens it.
/// </summary>
public sealed class LoginLinks(ClusterSecret secret, WeftSettings settings, CoordinatorReadiness readiness, ILogger<LoginLinks> log)
{
    private int _warned;
    public const string LoginPrefix = "/login";
    private const int MacBytes = 20;
    private readonly byte[] _key = secret.Derive("device login links");

    public TimeSpan Lifetime => TimeSpan.FromSeconds(settings.Api.LoginLinkSeconds);

    /// <summary>The base every address starts with, ending in '/'.</summary>
    public async Task<Uri> BaseAsync()
    {
        if (settings.Api.PublicUrl is not { Length: > 0 } url)
        {
            var bound = await readiness.ApiAddress;
            if (Interlocked.Exchange(ref _warned, 1) == 0)
                log.LogWarning("Weft:Api:PublicUrl is not set: login links and redirect URIs use {Address}, which only browsers on this machine reach; set it to the address people's browsers use", bound);
            url = bound.AbsoluteUri;
        }
        var configured = new Uri(url);
        return configured.AbsoluteUri.EndsWith('/') ? configured : new Uri(configured.AbsoluteUri + "/");
    }

    public async Task<Uri> LinkFor(string tailnetId, string loginId) =>
        new(await BaseAsync(), $"login/{tailnetId}/{loginId}.{Mac(tailnetId, loginId)}");

    public static string CallbackPath(string tailnetId) => $"{LoginPrefix}/oidc/{tailnetId}/callback";

    public async Task<Uri> RedirectUriFor(string tailnetId) => new(await BaseAsync(), CallbackPath(tailnetId)[1..]);

    /// <summary>The login id a link's last segment names, if its MAC is right for <paramref name="tailnetId"/>.</summary>
    public bool TryOpen(string tailnetId, string token, out string loginId)
    {
        loginId = "";
        var dot = token.IndexOf('.');
        if (dot <= 0 || dot > 64 || token.Length - dot - 1 > 64) return false;
        var id = token[..dot];
        var expected = Encoding.ASCII.GetBytes(Mac(tailnetId, id));
        var presented = Encoding.ASCII.GetBytes(token[(dot + 1)..]);
        if (!CryptographicOperations.FixedTimeEquals(expected, presented)) return false;
        loginId = id;
        return true;
    }

    private string Mac(string tailnetId, string loginId)
    {
        var mac = HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes($"{tailnetId}\n{loginId}"));
        return Convert.ToBase64String(mac, 0, MacBytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }
}
