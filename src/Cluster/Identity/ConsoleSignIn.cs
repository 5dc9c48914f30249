using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Weft.Cluster.Api;
using Weft.Cluster.Hosting;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Identity;

/// <summary>A person signed in to a tailnet's console, with the role they hold now.</summary>
public sealed record ConsoleSession(string TailnetId, string UserId, string Email, UserRole Role);

/// <summary>
/// Signing in to the console through the tailnet's identity provider, instead of pasting an API key:
/// <c>/admin/login/{tailnet}</c> sends the browser to the provider (the tailnet's own OpenID Connect
/// scheme, and the same redirect URI as device login); back, the person is the tailnet's user and
/// gets a session cookie (HttpOnly, SameSite=Strict, sealed with the cluster secret, 8 hours). With it
/// the admin API answers them as their role allows, checked on every request: owners and admins
/// administer the tailnet, auditors read it, members have no admin access. A request that changes
/// something must also carry <c>X-Weft-Console: 1</c>, which another site's page cannot send.
/// </summary>
public static class ConsoleSignIn
{
    public const string CookieName = "weft-console";
    public const string CsrfHeader = "X-Weft-Console";
    public const string ConsoleItem = "weft.console";
    public static readonly TimeSpan SessionLifetime = TimeSpan.FromHours(8);
    private const string TailnetClaim = "weft:tailnet";
    private const string UserClaim = "weft:user";

    public static void ConfigureCookie(CookieAuthenticationOptions cookie, ClusterSecret secret)
    {
        cookie.Cookie.Name = CookieName;
        cookie.Cookie.HttpOnly = true;
        cookie.Cookie.SameSite = SameSiteMode.Strict;
        cookie.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
        cookie.Cookie.Path = "/";
        cookie.ExpireTimeSpan = SessionLifetime;
        cookie.SlidingExpiration = false;
        cookie.TicketDataFormat = new TicketDataFormat(new ClusterSecretProtector(secret, "console session"));
        // An API client gets the API's own answers, never a redirect to a login page.
        cookie.Events.OnRedirectToLogin = context => { context.Response.StatusCode = StatusCodes.Status401Unauthorized; return Task.CompletedTask; };
        cookie.Events.OnRedirectToAccessDenied = context => { context.Response.StatusCode = StatusCodes.Status403Forbidden; return Task.CompletedTask; };
    }

    public static WebApplication MapConsoleSignIn(this WebApplication app)
    {
        app.MapGet(WebConsole.AdminConsole.Path + "/login/{tailnet}", StartAsync);
        app.MapPost(WebConsole.AdminConsole.Path + "/logout", async (HttpContext http) =>
        {
            await http.SignOutAsync(TailnetSignIn.CookieScheme);
            return Results.Redirect(WebConsole.AdminConsole.Path);
        });
        return app;
    }

    /// <summary><c>GET /api/v1/session</c>: who the caller is (a signed-in person, or an API key).</summary>
    public static void MapSessionEndpoint(this RouteGroupBuilder api) => api.MapGet("/session", (HttpContext http) =>
    {
        var caller = ApiCaller.Of(http);
        return Results.Json(caller.Person is { } person
            ? new SessionResource("person", person.TailnetId, person.UserId, person.Email, person.Role.Name())
            : new SessionResource(caller.IsOperator ? "operator-key" : "tailnet-key", caller.TailnetId, null, null, null), AdminJson.Options);
    });

    private static async Task StartAsync(HttpContext http, string tailnet, TailnetRefs refs, TailnetSignIn signIn)
    {
        try
        {
            var entry = await refs.FindAsync(http, tailnet) ?? throw new ApiException(LoginErrorCodes.Unknown, $"There is no tailnet '{tailnet}'.");
            var scheme = await signIn.EnsureCurrentAsync(http, refs, entry.TailnetId);
            var properties = new AuthenticationProperties();
            properties.Items[TailnetSignIn.TailnetItem] = entry.TailnetId;
            properties.Items[ConsoleItem] = entry.Name;
            await DeviceLoginPages.ChallengeAtProviderAsync(http, scheme, properties);
        }
        catch (ApiException e)
        {
            await DeviceLoginPages.ErrorPage(http, e.Code,
                e.Code == LoginErrorCodes.NoProvider ? $"Tailnet {tailnet} has no identity provider: sign in to the console with an API key." : e.Message);
        }
    }

    /// <summary>Back from the provider with a person the tailnet admits: make them its user, and let them in if their role reads the console.</summary>
    public static async Task CompleteAsync(HttpContext http, string tailnetId, string tailnetName, SignedInIdentity identity)
    {
        var refs = http.RequestServices.GetRequiredService<TailnetRefs>();
        var clock = http.RequestServices.GetRequiredService<TimeProvider>();
        var user = (await refs.Tailnets.AskFor<UserInfo>(new SignInUser(tailnetId, identity, "usr_" + Identifiers.RandomBase32(12), clock.GetUtcNow()), http)).User;
        if (!user.Role.Reads())
        {
            await DeviceLoginPages.ErrorPage(http, "console_forbidden",
                $"{user.Name} is a member of tailnet {tailnetName}: the console is for its owners, admins and auditors. An admin can give you a role (weft user role).");
            return;
        }
        var principal = new ClaimsPrincipal(new ClaimsIdentity(
            [new Claim(TailnetClaim, tailnetId), new Claim(UserClaim, user.UserId), new Claim(ClaimTypes.Name, user.Name)], TailnetSignIn.CookieScheme));
        await http.SignInAsync(TailnetSignIn.CookieScheme, principal, new AuthenticationProperties { IsPersistent = false });
        http.Response.Redirect($"{WebConsole.AdminConsole.Path}#/tailnets/{Uri.EscapeDataString(tailnetName)}");
    }

    /// <summary>
    /// The API caller a console session cookie makes, with the role the user holds now (a demoted or
    /// deleted user loses access at once); null when the request carries no session.
    /// </summary>
    public static async Task<ApiCaller?> CallerAsync(HttpContext http, TailnetRefs refs)
    {
        if (!http.Request.Cookies.ContainsKey(CookieName)) return null;
        var result = await http.AuthenticateAsync(TailnetSignIn.CookieScheme);
        if (!result.Succeeded || result.Principal.FindFirst(TailnetClaim)?.Value is not { } tailnetId || result.Principal.FindFirst(UserClaim)?.Value is not { } userId)
            throw new ApiException(ApiErrorCodes.Unauthorized, "the console session is not valid (expired, or from another cluster); sign in again");
        var users = await refs.Tailnets.AskFor<UserList>(new ListUsers(tailnetId), http);
        var user = users.Users.FirstOrDefault(u => u.UserId == userId)
            ?? throw new ApiException(ApiErrorCodes.Unauthorized, "the signed-in user no longer exists in the tailnet");
        if (!user.Role.Reads())
            throw new ApiException(ApiErrorCodes.Forbidden, $"{user.Name} is a member: the admin API and console are for owners, admins and auditors");
        var changes = !HttpMethods.IsGet(http.Request.Method) && !HttpMethods.IsHead(http.Request.Method);
        if (changes && http.Request.Headers[CsrfHeader] != "1")
            throw new ApiException(ApiErrorCodes.Forbidden, $"a change made with a console session must carry the header {CsrfHeader}: 1");
        if (changes && !user.Role.Administers())
            throw new ApiException(ApiErrorCodes.Forbidden, $"{user.Name} is an auditor: auditors read the tailnet and change nothing");
        return new ApiCaller("console:" + user.UserId, ApiKeys.ApiKeyScope.Tailnet, tailnetId)
        {
            Person = new ConsoleSession(tailnetId, user.UserId, user.Name, user.Role),
        };
    }
}
