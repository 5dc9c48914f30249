using System.Net;
using System.Net.Http.Json;
using Microsoft.Playwright;
using Weft.Cluster.Tests.Support;
using Weft.ClusterLab;
using Weft.Contracts.Admin;
using Weft.NodeAgent.Control;
using Xunit.Abstractions;

using static Microsoft.Playwright.Assertions;

namespace Weft.Cluster.Tests.Identity;

/// <summary>
/// Interactive device login end to end: agents (real ControlClients) join a tailnet without a key,
/// show a login link, and a person signs them in through the tailnet's own provider (npm's
/// oidc-provider on loopback) in a real browser (headless chromium). Every way a sign-in can go
/// wrong ends on a page that names it, and leaves the device waiting.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class DeviceLoginBrowserTests(ITestOutputHelper output)
{
    private const string Secret = "device-login-client-secret";

    [SkippableFact]
    public async Task A_person_signs_a_waiting_device_in_at_the_tailnets_provider_again_after_expiry_and_every_bad_sign_in_is_refused_with_its_reason()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var coordinator = await TestCoordinator.StartAsync(storage);
        var acme = await coordinator.Http.CreateTailnet("login-acme");
        var globex = await coordinator.Http.CreateTailnet("login-globex");
        await using var provider = await OidcTestProvider.StartAsync([
            new OidcTestClient("weft-acme", Secret, [Callback(coordinator, acme.Id)]),
            new OidcTestClient("weft-globex", Secret, [Callback(coordinator, globex.Id)]),
        ]);
        await coordinator.Http.SetProvider(acme.Id, provider.IssuerIdentifier, "weft-acme", Secret, ["example.com"]);
        await coordinator.Http.SetProvider(globex.Id, provider.IssuerIdentifier, "weft-globex", Secret, ["globex.example"]);
        await using var agents = new AgentSystem();
        await using var browser = await Browser.LaunchAsync();

        // The agent joins without a key and shows a link on this coordinator's web address.
        using var laptop = TestAgent.Start(agents, coordinator.Control, "alice-laptop", authKey: null, tailnet: "login-acme");
        var link = await LinkOf(laptop);
        Assert.StartsWith(new Uri(coordinator.Api, $"login/{acme.Id}/").AbsoluteUri, link);
        Assert.Contains(link, laptop.State.Detail);

        var page = await browser.NewPageAsync();
        await Browser.Step(page, output, "device-login", async () =>
        {
            await page.GotoAsync(link);
            await Browser.SignInAtProvider(page, OidcTestProvider.Alice);
            await Expect(page.Locator("#login-done")).ToBeVisibleAsync();
            await Expect(page.Locator("#login-user")).ToHaveTextAsync("alice@example.com");
        });

        // The agent goes on by itself, and the device is Alice's: her identity, her groups.
        await laptop.WaitForState(ControlState.Running);
        Assert.Null((await laptop.Status()).LoginUrl);
        var device = await coordinator.Http.GetDevice(acme.Id, laptop.DeviceId!);
        Assert.Equal(("alice@example.com", "active"), (device.User, device.Status));
        var alice = Assert.Single((await (await coordinator.Http.GetAsync($"/api/v1/tailnets/{acme.Id}/users")).ReadAs<UserListResource>(HttpStatusCode.OK)).Users);
        Assert.Equal((provider.IssuerIdentifier, "alice"), (alice.Issuer, alice.Subject));
        Assert.Equal(["admins", "eng"], alice.Groups);

        // The link signs in once.
        var reused = await browser.NewPageAsync();
        await Browser.Step(reused, output, "device-login-reused", async () =>
        {
            await reused.GotoAsync(link);
            await ExpectRefusal(reused, "login_used", "used already");
        });

        // An altered link, and a made-up answer at the callback (wrong state): each refused with its reason.
        using var web = new HttpClient { BaseAddress = coordinator.Api };
        await ExpectRefusal(await web.GetAsync(link[..^3] + "AAA"), HttpStatusCode.BadRequest, "login_invalid");
        await ExpectRefusal(await web.GetAsync($"login/oidc/{acme.Id}/callback?code=made-up&state=not-weft-state"), HttpStatusCode.BadRequest, "login_state_invalid");

        // A second device waits; sign-ins that must fail leave it waiting, each with its reason.
        using var desktop = TestAgent.Start(agents, coordinator.Control, "shared-desktop", authKey: null, tailnet: "login-acme");
        var desktopLink = await LinkOf(desktop);
        await RefusedSignIn(browser, desktopLink, OidcTestProvider.Mallory, "login_not_allowed", "admits the email domains example.com only", "outside-domain");
        await provider.SetIdTokenModeAsync("tamper");
        await RefusedSignIn(browser, desktopLink, OidcTestProvider.Bob, "login_token_invalid", "signature does not verify", "tampered-token");
        await provider.SetIdTokenModeAsync("foreign-issuer");
        await RefusedSignIn(browser, desktopLink, OidcTestProvider.Bob, "login_wrong_issuer", "another identity provider", "foreign-issuer");
        await provider.SetIdTokenModeAsync("normal");
        Assert.Equal(ControlState.WaitingForLogin, desktop.State.State);
        // The waiting agent restarts: it is shown the same link (the device, its key and its open link live in the tailnet).
        await desktop.Stop();
        using var desktopAgain = TestAgent.Start(agents, [coordinator.Control], "shared-desktop", authKey: null, tailnet: "login-acme", store: desktop.Store);
        Assert.Equal(desktopLink, await LinkOf(desktopAgain));
        Assert.Single((await (await coordinator.Http.GetAsync($"/api/v1/tailnets/{acme.Id}/users")).ReadAs<UserListResource>(HttpStatusCode.OK)).Users);

        // Tenant isolation: globex admits its own domain only; Alice of acme cannot put a device there, and globex sees none of acme.
        using var intruder = TestAgent.Start(agents, coordinator.Control, "intruder", authKey: null, tailnet: "login-globex");
        var globexLink = await LinkOf(intruder);
        await RefusedSignIn(browser, globexLink, OidcTestProvider.Alice, "login_not_allowed", "globex.example only", "other-tenant");
        Assert.Empty((await (await coordinator.Http.GetAsync($"/api/v1/tailnets/{globex.Id}/users")).ReadAs<UserListResource>(HttpStatusCode.OK)).Users);
        var globexDevices = await (await coordinator.Http.GetAsync($"/api/v1/tailnets/{globex.Id}/devices")).ReadAs<DeviceListResource>(HttpStatusCode.OK);
        Assert.All(globexDevices.Devices, d => Assert.Equal("pending", d.Status));
        Assert.DoesNotContain(globexDevices.Devices, d => d.Id == laptop.DeviceId);

        // Node-key expiry sends the person through the same flow again: a new link; signing in renews the device.
        using (await coordinator.Http.PostAsync($"/api/v1/tailnets/{acme.Id}/devices/{laptop.DeviceId}/expire", null)) { }
        var again = await LinkOf(laptop);
        Assert.NotEqual(link, again);
        await Browser.Step(page, output, "device-login-again", async () =>
        {
            await page.GotoAsync(again);
            await Browser.SignInAtProvider(page, OidcTestProvider.Alice); // the provider remembers her: no login page this time
            await Expect(page.Locator("#login-done")).ToBeVisibleAsync();
        });
        await laptop.WaitForState(ControlState.Running);
        var renewed = await coordinator.Http.GetDevice(acme.Id, laptop.DeviceId!);
        Assert.Equal(("active", device.Addresses[0]), (renewed.Status, renewed.Addresses[0]));
        Assert.True(renewed.KeyExpiry > device.KeyExpiry);
    }

    [SkippableFact]
    public async Task A_login_link_expires_and_the_waiting_agent_shows_a_new_one()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var coordinator = await TestCoordinator.StartAsync(storage, [new("Weft:Api:LoginLinkSeconds", "5")]);
        var acme = await coordinator.Http.CreateTailnet("login-expiry");
        await using var provider = await OidcTestProvider.StartAsync([new OidcTestClient("weft", Secret, [Callback(coordinator, acme.Id)])]);
        await coordinator.Http.SetProvider(acme.Id, provider.IssuerIdentifier, "weft", Secret);
        await using var agents = new AgentSystem();

        using var laptop = TestAgent.Start(agents, coordinator.Control, "slow-laptop", authKey: null, tailnet: "login-expiry");
        var first = await LinkOf(laptop);
        var replaced = (await Eventually.Until(async () => (await laptop.Status()).LoginUrl, url => url is not null && url != first, "a new login link"))!;

        using var web = new HttpClient { BaseAddress = coordinator.Api };
        await ExpectRefusal(await web.GetAsync(first), HttpStatusCode.BadRequest, "login_expired");
        // The new link leads to the provider.
        using var noRedirects = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false });
        using var toProvider = await noRedirects.GetAsync(replaced);
        Assert.Equal(HttpStatusCode.Redirect, toProvider.StatusCode);
        Assert.StartsWith(provider.IssuerIdentifier + "/", toProvider.Headers.Location!.AbsoluteUri);
        // ASP.NET pushes the authorization request (PAR) when the provider offers it: the code challenge (S256) went there.
        Assert.Contains("client_id=weft&request_uri=", toProvider.Headers.Location.Query);
    }

    private static string Callback(TestCoordinator coordinator, string tailnetId) => new Uri(coordinator.Api, $"login/oidc/{tailnetId}/callback").AbsoluteUri;

    private static async Task<string> LinkOf(TestAgent agent)
    {
        await agent.WaitForState(ControlState.WaitingForLogin);
        return (await Eventually.Until(async () => (await agent.Status()).LoginUrl, url => url is not null, $"{agent.Hostname}'s login link"))!;
    }

    private async Task RefusedSignIn(Browser browser, string link, OidcTestUser user, string code, string reason, string step)
    {
        var page = await browser.NewPageAsync(); // a fresh browser: no session at the provider
        await Browser.Step(page, output, "device-login-" + step, async () =>
        {
            await page.GotoAsync(link);
            await Browser.SignInAtProvider(page, user);
            await ExpectRefusal(page, code, reason);
        });
    }

    private static async Task ExpectRefusal(IPage page, string code, string reason)
    {
        await Expect(page.Locator("#login-error")).ToHaveAttributeAsync("data-code", code);
        await Expect(page.Locator("#login-error")).ToContainTextAsync(reason);
    }

    private static async Task ExpectRefusal(HttpResponseMessage response, HttpStatusCode status, string code)
    {
        using (response)
        {
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == status, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
            Assert.Contains($"data-code=\"{code}\"", body);
        }
    }
}
