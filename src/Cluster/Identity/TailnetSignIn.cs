using System.Collections.Concurrent;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Weft.Cluster.Hosting;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Identity;

/// <summary>
/// One ASP.NET OpenID Connect scheme per tailnet that has a provider, added when first needed and
/// rebuilt when the tailnet's settings change. Every scheme runs the authorization code flow with
/// PKCE (S256), state and nonce, and reads the person from the validated ID token (ASP.NET's
/// handler and IdentityModel check its signature against the provider's published keys, its issuer,
/// audience, lifetime and nonce). Its state and nonce are protected with the cluster secret, so that
/// a sign-in started on one node completes on any other.
/// <para>
/// A tailnet's scheme is no request handler of ASP.NET's authentication middleware
/// (<see cref="TailnetSchemesOutOfTheMiddleware"/>): its callback endpoint rebuilds it for the settings
/// in force and runs it itself. The middleware would otherwise run every scheme this node ever built on
/// every request (an API call, a relay's access check, a metrics scrape), and would answer a callback
/// with the settings this node last saw, before an admin changed them through another node. A scheme
/// whose tailnet has no provider any more, or that no one used for <see cref="IdleSchemeLifetime"/>, is
/// removed (it is built again when next needed).
/// </para>
/// </summary>
public sealed class TailnetSignIn(
    IAuthenticationSchemeProvider schemes,
    IOptionsMonitorCache<OpenIdConnectOptions> optionsCache,
    ClusterSecret secret,
    LoginLinks links) : IConfigureNamedOptions<OpenIdConnectOptions>
{
    public const string SchemePrefix = "weft-oidc-";
    /// <summary>The console's session cookie (<see cref="ConsoleSignIn"/>); device login answers its callback itself and signs no one in.</summary>
    public const string CookieScheme = "weft-console";
    public const string TailnetItem = "weft.tailnet";
    public const string LoginItem = "weft.login";

    /// <summary>How long a tailnet's scheme stays on this node after its last use (a sign-in takes minutes).</summary>
    public static readonly TimeSpan IdleSchemeLifetime = TimeSpan.FromHours(1);

    private readonly ConcurrentDictionary<string, Provider> _providers = new();
    private readonly object _gate = new();

    /// <summary>What a tailnet's scheme was built from, and when it was last asked for.</summary>
    public sealed record Provider(string TailnetId, SsoSettings Settings)
    {
        public long LastUsed { get; set; } = Environment.TickCount64;
    }

    public static string SchemeFor(string tailnetId) => SchemePrefix + tailnetId;

    /// <summary>The provider settings the tailnet's scheme uses now (null: none built yet).</summary>
    public SsoSettings? SettingsOf(string tailnetId) => _providers.TryGetValue(SchemeFor(tailnetId), out var provider) ? provider.Settings : null;

    /// <summary>
    /// The tailnet's scheme, added or rebuilt for the provider settings the tailnet holds now (a sign-in may
    /// have started on another node, before this one restarted, or before an admin changed the settings).
    /// </summary>
    /// <exception cref="Api.ApiException">The tailnet has no provider (<see cref="LoginErrorCodes.NoProvider"/>), or did not answer.</exception>
    public async Task<string> EnsureCurrentAsync(HttpContext http, Api.TailnetRefs refs, string tailnetId)
    {
        var sso = await Api.ClusterAsk.AskFor<SsoInfo>(refs.Tailnets, new GetSso(tailnetId), http);
        if (sso.Settings is null)
        {
            Forget(tailnetId);
            throw new Api.ApiException(LoginErrorCodes.NoProvider, "This tailnet signs no one in: it has no identity provider.");
        }
        return Ensure(tailnetId, sso.Settings);
    }

    /// <summary>The tailnet's scheme, added or rebuilt for <paramref name="settings"/>; schemes idle for <see cref="IdleSchemeLifetime"/> go.</summary>
    public string Ensure(string tailnetId, SsoSettings settings)
    {
        var scheme = SchemeFor(tailnetId);
        var now = Environment.TickCount64;
        lock (_gate)
        {
            if (!_providers.TryGetValue(scheme, out var known) || !known.Settings.Equals(settings))
            {
                _providers[scheme] = known = new Provider(tailnetId, settings);
                optionsCache.TryRemove(scheme); // the next use builds the options (and reads discovery) afresh
            }
            known.LastUsed = now;
            foreach (var idle in _providers.Values.Where(p => now - p.LastUsed > (long)IdleSchemeLifetime.TotalMilliseconds).ToList())
                ForgetLocked(idle.TailnetId);
            // Under the lock with its provider: a Forget between the two would leave a scheme with no settings.
            schemes.TryAddScheme(new AuthenticationScheme(scheme, $"tailnet {tailnetId}", typeof(OpenIdConnectHandler)));
        }
        return scheme;
    }

    /// <summary>Removes the tailnet's scheme, if this node built one (its tailnet has no provider any more).</summary>
    public void Forget(string tailnetId)
    {
        lock (_gate) ForgetLocked(tailnetId);
    }

    private void ForgetLocked(string tailnetId)
    {
        var scheme = SchemeFor(tailnetId);
        if (!_providers.TryRemove(scheme, out _)) return;
        schemes.RemoveScheme(scheme);
        optionsCache.TryRemove(scheme);
    }

    /// <summary>How many tailnet schemes this node holds now.</summary>
    public int SchemeCount => _providers.Count;

    public void Configure(OpenIdConnectOptions options) { }

    public void Configure(string? name, OpenIdConnectOptions options)
    {
        if (name is null || !_providers.TryGetValue(name, out var provider)) return;
        var settings = provider.Settings;
        options.Authority = settings.Issuer;
        options.RequireHttpsMetadata = new Uri(settings.Issuer).Scheme == Uri.UriSchemeHttps; // plain http only where allowed for loopback tests
        options.ClientId = settings.ClientId;
        options.ClientSecret = ClientSecrets.Open(secret, provider.TailnetId, settings.ClientSecret);
        options.ResponseType = OpenIdConnectResponseType.Code;
        // A top-level GET back to us: the correlation and nonce cookies (SameSite=Lax) come along without https.
        options.ResponseMode = OpenIdConnectResponseMode.Query;
        options.UsePkce = true;
        options.CallbackPath = LoginLinks.CallbackPath(provider.TailnetId);
        options.Scope.Clear();
        foreach (var scope in settings.Scopes) options.Scope.Add(scope);
        options.MapInboundClaims = false; // claims keep their OpenID Connect names: sub, email, groups
        options.GetClaimsFromUserInfoEndpoint = false; // the person is what the signed ID token says
        options.SaveTokens = false;
        options.DisableTelemetry = true;
        options.SignInScheme = CookieScheme;
        options.TokenValidationParameters.NameClaimType = "email";
        options.CorrelationCookie.SameSite = SameSiteMode.Lax;
        options.CorrelationCookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
        options.NonceCookie.SameSite = SameSiteMode.Lax;
        options.NonceCookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
        var protector = new ClusterSecretProtector(secret, "oidc sign-in " + provider.TailnetId);
        options.StateDataFormat = new PropertiesDataFormat(protector.CreateProtector("state"));
        options.StringDataFormat = new SecureDataFormat<string>(new Utf8Text(), protector.CreateProtector("nonce"));
        options.Events = new OpenIdConnectEvents
        {
            // The redirect URI registered at the provider is the public one, whatever Host this request came with.
            OnRedirectToIdentityProvider = async context =>
                context.ProtocolMessage.RedirectUri = (await links.RedirectUriFor(provider.TailnetId)).AbsoluteUri,
            OnTicketReceived = DeviceLoginPages.OnSignedInAsync,
            OnRemoteFailure = DeviceLoginPages.OnFailureAsync,
        };
    }

    private sealed class Utf8Text : IDataSerializer<string>
    {
        public byte[] Serialize(string model) => System.Text.Encoding.UTF8.GetBytes(model);

        public string Deserialize(byte[] data) => System.Text.Encoding.UTF8.GetString(data);
    }
}

/// <summary>
/// ASP.NET's scheme provider, with the tailnets' OpenID Connect schemes left out of the request handlers
/// that the authentication middleware runs on every request (see <see cref="TailnetSignIn"/>): each
/// tailnet's callback endpoint runs its scheme itself.
/// </summary>
public sealed class TailnetSchemesOutOfTheMiddleware(IOptions<AuthenticationOptions> options) : AuthenticationSchemeProvider(options)
{
    public override async Task<IEnumerable<AuthenticationScheme>> GetRequestHandlerSchemesAsync() =>
        (await base.GetRequestHandlerSchemesAsync()).Where(s => !s.Name.StartsWith(TailnetSignIn.SchemePrefix, StringComparison.Ordinal)).ToList();
}
