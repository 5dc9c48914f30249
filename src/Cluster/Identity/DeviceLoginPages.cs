using System.Collections.Immutable;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Weft.Cluster.Api;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Identity;

/// <summary>
/// The pages of interactive device login, on the admin listener:
/// <list type="bullet">
/// <item><c>GET /login/{tailnet}/{login}.{mac}</c>, the link an agent shows: checks it (known, open,
/// not expired) and sends the browser to the tailnet's provider.</item>
/// <item><c>/login/oidc/{tailnet}/callback</c>, the redirect URI registered at the provider: the
/// tailnet's OpenID Connect handler checks the answer and the ID token; then the person's email and
/// groups are checked against the tailnet's allowed domains and groups, and the device becomes theirs
/// (or, for a console sign-in, <see cref="ConsoleSignIn"/> lets them in).</item>
/// </list>
/// Every failure is a page that says what went wrong (status 400, or 404 for an unknown link;
/// <c>#login-error</c> with a <c>data-code</c>), never a stack trace.
/// </summary>
public static class DeviceLoginPages
{
    public static IServiceCollection AddDeviceLogin(this IServiceCollection services)
    {
        // Nothing of sign-in rests with one node: its state, nonce and console session are sealed with the
        // cluster secret (ClusterSecretProtector). ASP.NET's own key ring stays in memory, not in ~/.aspnet.
        services.AddDataProtection().UseEphemeralDataProtectionProvider();
        services.AddAuthentication().AddCookie(TailnetSignIn.CookieScheme);
        services.Replace(ServiceDescriptor.Singleton<IAuthenticationSchemeProvider, TailnetSchemesOutOfTheMiddleware>());
        services.AddOptions<CookieAuthenticationOptions>(TailnetSignIn.CookieScheme).Configure<Hosting.ClusterSecret>(ConsoleSignIn.ConfigureCookie);
        services.AddSingleton<TailnetSignIn>();
        services.AddSingleton<IConfigureOptions<OpenIdConnectOptions>>(s => s.GetRequiredService<TailnetSignIn>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<OpenIdConnectOptions>, OpenIdConnectPostConfigureOptions>());
        return services;
    }

    public static WebApplication MapDeviceLogin(this WebApplication app)
    {
        app.MapGet(LoginLinks.LoginPrefix + "/{tailnet}/{token}", StartAsync);
        app.MapMethods(LoginLinks.CallbackPath("{tailnet}"), [HttpMethods.Get, HttpMethods.Post], CallbackAsync);
        return app;
    }

    private static async Task StartAsync(HttpContext http, string tailnet, string token, TailnetRefs refs, LoginLinks links, TailnetSignIn signIn, TimeProvider clock)
    {
        if (!links.TryOpen(tailnet, token, out var loginId))
        {
            await ErrorPage(http, "login_invalid", "This is not a login link of this Weft coordinator: it was mistyped, cut short or altered. Copy the whole link the agent printed.");
            return;
        }
        try
        {
            var login = await refs.Tailnets.AskFor<DeviceLoginInfo>(new GetDeviceLogin(tailnet, loginId, clock.GetUtcNow()), http);
            var scheme = await signIn.EnsureCurrentAsync(http, refs, tailnet);
            var properties = new AuthenticationProperties();
            properties.Items[TailnetSignIn.TailnetItem] = tailnet;
            properties.Items[TailnetSignIn.LoginItem] = login.Login.LoginId;
            await ChallengeAtProviderAsync(http, scheme, properties);
        }
        catch (ApiException e)
        {
            await ErrorPage(http, e.Code, Sentence(e.Message));
        }
    }

    /// <summary>
    /// Sends the browser to the tailnet's provider. A provider that cannot be read or refuses the request
    /// (a pushed authorization request with a redirect URI it does not know, a client it does not know) is
    /// the operator's to fix: the page says what the provider said, and the log has it too.
    /// </summary>
    internal static async Task ChallengeAtProviderAsync(HttpContext http, string scheme, AuthenticationProperties properties)
    {
        try
        {
            await http.ChallengeAsync(scheme, properties);
        }
        catch (Exception e) when (e is OpenIdConnectProtocolException or HttpRequestException || e.Message.StartsWith("IDX20803", StringComparison.Ordinal))
        {
            http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(DeviceLoginPages))
                .LogWarning(e, "The identity provider of {Scheme} did not start a sign-in", scheme);
            await ErrorPage(http, LoginErrorCodes.ProviderRefused, "The tailnet's identity provider did not start the sign-in: " + Sentence(e.Message) + " An admin of the tailnet should check its provider settings.");
        }
    }

    private static async Task CallbackAsync(HttpContext http, string tailnet, TailnetRefs refs, TailnetSignIn signIn, IAuthenticationHandlerProvider handlers)
    {
        try
        {
            // The scheme is built here for the settings in force now: the sign-in may have started elsewhere.
            var entry = await refs.FindAsync(http, tailnet) ?? throw new ApiException(LoginErrorCodes.Unknown, "There is no such tailnet.");
            var scheme = await signIn.EnsureCurrentAsync(http, refs, entry.TailnetId);
            if (await handlers.GetHandlerAsync(http, scheme) is IAuthenticationRequestHandler handler && await handler.HandleRequestAsync()) return;
            await ErrorPage(http, "login_invalid", "This address takes only the identity provider's answer to a sign-in that Weft started.");
        }
        catch (ApiException e)
        {
            await ErrorPage(http, e.Code, Sentence(e.Message));
        }
    }

    /// <summary>The provider vouched for the person (the ID token checked out): check them against the tailnet's rules and give them the device.</summary>
    public static async Task OnSignedInAsync(TicketReceivedContext context)
    {
        context.HandleResponse(); // answered here: nobody is signed in to a cookie
        var http = context.HttpContext;
        IDictionary<string, string?> items = context.Properties?.Items ?? new Dictionary<string, string?>();
        if (!items.TryGetValue(TailnetSignIn.TailnetItem, out var tailnetId) || tailnetId is null)
        {
            await ErrorPage(http, "login_invalid", "This sign-in was not started by Weft.");
            return;
        }
        var signIn = http.RequestServices.GetRequiredService<TailnetSignIn>();
        if (signIn.SettingsOf(tailnetId) is not { } settings)
        {
            // Its provider was removed while the provider's answer was being checked.
            await ErrorPage(http, LoginErrorCodes.NoProvider, "This tailnet signs no one in any more: its identity provider was removed.");
            return;
        }
        var principal = context.Principal!;
        var subject = principal.FindFirst("sub");
        var email = principal.FindFirst("email")?.Value;
        if (subject is null || string.IsNullOrEmpty(email))
        {
            await ErrorPage(http, LoginErrorCodes.NotAllowed, "The identity provider did not say who you are by email: the tailnet's provider settings must ask for the email scope.");
            return;
        }
        if (principal.FindFirst("email_verified")?.Value is "false" or "False")
        {
            await ErrorPage(http, LoginErrorCodes.NotAllowed, $"The identity provider has not verified {email}; verify it there first.");
            return;
        }
        var groups = principal.FindAll(settings.GroupsClaim).Select(c => c.Value).Where(g => g.Length is > 0 and <= SsoRules.MaxNameLength).Take(SsoRules.MaxEntries)
            .ToImmutableArray();
        // Said here at once; the tailnet decides again on the settings in force (this node's copy can be older).
        if (settings.Refuses(email, groups) is { } refusal)
        {
            await ErrorPage(http, LoginErrorCodes.NotAllowed, refusal);
            return;
        }
        var identity = new SignedInIdentity(subject.Issuer, subject.Value, email, groups);
        try
        {
            if (items.TryGetValue(ConsoleSignIn.ConsoleItem, out var tailnetName) && tailnetName is not null)
            {
                await ConsoleSignIn.CompleteAsync(http, tailnetId, tailnetName, identity);
                return;
            }
            if (!items.TryGetValue(TailnetSignIn.LoginItem, out var loginId) || loginId is null)
            {
                await ErrorPage(http, "login_invalid", "This sign-in was not started by a login link.");
                return;
            }
            var refs = http.RequestServices.GetRequiredService<TailnetRefs>();
            var clock = http.RequestServices.GetRequiredService<TimeProvider>();
            var done = await refs.Tailnets.AskFor<DeviceLoginDone>(
                new CompleteDeviceLogin(tailnetId, loginId, identity, "usr_" + Identifiers.RandomBase32(12), clock.GetUtcNow()), http);
            await Page(http, StatusCodes.Status200OK, "Device connected", $"""
                <h1 id="login-done">Device connected</h1>
                <p>The device <strong id="login-device">{Html(done.Device.Name)}</strong> ({Html(done.Device.Hostname)}) is now in the tailnet as
                <strong id="login-user">{Html(done.User.Name)}</strong>'s, at <code id="login-address">{Html(done.Device.Ipv4)}</code>.</p>
                <p>The agent continues by itself; you may close this window.</p>
                """);
        }
        catch (ApiException e)
        {
            await ErrorPage(http, e.Code, Sentence(e.Message));
        }
    }

    /// <summary>The handler refused the provider's answer (or the provider refused the person): say which check failed.</summary>
    public static async Task OnFailureAsync(RemoteFailureContext context)
    {
        context.HandleResponse();
        var (code, message) = Describe(context.Failure);
        await ErrorPage(context.HttpContext, code, message);
    }

    public static (string Code, string Message) Describe(Exception? failure)
    {
        var text = failure?.Message ?? "";
        bool Has(string part) => text.Contains(part, StringComparison.Ordinal);
        if (Has("message.State")) return ("login_state_invalid", "The sign-in's state is not one this Weft cluster issued (altered, made up, or from another cluster). Start again from the agent's login link.");
        if (Has("Correlation failed")) return ("login_correlation_failed", "This sign-in did not start in this browser, or took too long. Open the agent's login link again.");
        if (Has("access_denied")) return ("login_denied", "The sign-in was cancelled or refused at the identity provider.");
        if (Has("IDX10205") || Has("IDX10204") || Has("IDX10211")) return ("login_wrong_issuer", "The ID token was issued by another identity provider than this tailnet's; it is refused.");
        if (Has("IDX10511") || Has("IDX10503") || Has("IDX10504") || Has("IDX10500") || Has("IDX10517") || Has("IDX14") || Has("IDX10508"))
            return ("login_token_invalid", "The ID token's signature does not verify against the identity provider's keys (it was altered on the way); it is refused.");
        if (Has("IDX21323") || Has("IDX21321") || Has("IDX21349") || Has("nonce")) return ("login_nonce_invalid", "The ID token was not issued for this sign-in (its nonce does not match); it is refused.");
        if (Has("IDX10223") || Has("IDX10222")) return ("login_token_expired", "The ID token is outside its validity period (check the clocks of Weft and the provider).");
        if (Has("IDX10214") || Has("IDX10208")) return ("login_token_invalid", "The ID token was issued for another client than this tailnet's.");
        return ("login_failed", "The sign-in failed: " + Sentence(text));
    }

    private static string Sentence(string message) =>
        message.Length == 0 ? "unknown error." : char.ToUpperInvariant(message[0]) + message[1..] + (message.EndsWith('.') ? "" : ".");

    internal static Task ErrorPage(HttpContext http, string code, string message) =>
        Page(http, code switch
        {
            LoginErrorCodes.Unknown => StatusCodes.Status404NotFound,
            LoginErrorCodes.ProviderRefused => StatusCodes.Status502BadGateway,
            _ => StatusCodes.Status400BadRequest,
        }, "Sign-in failed", $"""
            <h1>Sign-in failed</h1>
            <p id="login-error" data-code="{Html(code)}">{Html(message)}</p>
            """);

    private static async Task Page(HttpContext http, int status, string title, string body)
    {
        if (http.Response.HasStarted) return;
        http.Response.StatusCode = status;
        http.Response.ContentType = "text/html; charset=utf-8";
        http.Response.Headers.CacheControl = "no-store";
        http.Response.Headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'";
        await http.Response.WriteAsync($"""
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>Weft: {Html(title)}</title>
            <style>body{"{"}font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;line-height:1.5{"}"}</style></head>
            <body>{body}</body></html>
            """);
    }

    private static string Html(string text) => HtmlEncoder.Default.Encode(text);
}
