using System.Net;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using Weft.Cluster.Tests.Support;
using Weft.ClusterLab;
using Weft.Contracts.Admin;
using Xunit.Abstractions;

using static Microsoft.Playwright.Assertions;

namespace Weft.Cluster.Tests.Identity;

/// <summary>
/// People sign in to the console at their tailnet's provider instead of pasting an API key, and
/// the admin API answers them as their role allows: an admin changes the tailnet, an auditor reads
/// it, a member is turned away, a demoted admin loses access at once, and a change without the
/// console's header (what another site's page would send) is refused.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class ConsoleSignInBrowserTests(ITestOutputHelper output)
{
    private const string Secret = "console-client-secret";

    [SkippableFact]
    public async Task An_admin_auditor_and_member_sign_in_at_the_provider_and_the_api_answers_each_as_their_role_allows()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var coordinator = await TestCoordinator.StartAsync(storage);
        var acme = await coordinator.Http.CreateTailnet("console-acme");
        await using var provider = await OidcTestProvider.StartAsync([
            new OidcTestClient("weft-console", Secret, [new Uri(coordinator.Api, $"login/oidc/{acme.Id}/callback").AbsoluteUri]),
        ]);
        await coordinator.Http.SetProvider(acme.Id, provider.IssuerIdentifier, "weft-console", Secret);
        // Roles are given by email before the people first sign in; their first sign-in makes them these users.
        await (await coordinator.Http.PostAsJsonAsync($"/api/v1/tailnets/{acme.Id}/users", new { name = "alice@example.com", role = "admin" })).ReadAs<UserResource>(HttpStatusCode.Created);
        await (await coordinator.Http.PostAsJsonAsync($"/api/v1/tailnets/{acme.Id}/users", new { name = "bob@example.com", role = "auditor" })).ReadAs<UserResource>(HttpStatusCode.Created);
        var badRole = await (await coordinator.Http.PostAsJsonAsync($"/api/v1/tailnets/{acme.Id}/users", new { name = "eve@example.com", role = "superuser" })).ReadError(HttpStatusCode.BadRequest);
        Assert.Contains("not one of owner, admin, member, auditor", badRole.Message);
        await using var browser = await Browser.LaunchAsync();
        var api = new Uri(coordinator.Api, "api/v1/").AbsoluteUri;

        // Alice, an admin: into the console, and she changes the tailnet (a new auth key).
        var alice = await browser.NewPageAsync();
        await Browser.Step(alice, output, "console-admin", async () =>
        {
            await SignInToConsole(alice, coordinator, "console-acme", OidcTestProvider.Alice);
            await Expect(alice).ToHaveURLAsync(new Regex("/admin#/tailnets/console-acme$"));
            await Expect(alice.Locator("#who")).ToHaveTextAsync("alice@example.com (admin)");
            await alice.ClickAsync("nav.tabs >> text=Auth keys");
            await alice.ClickAsync("#create-auth-key");
            await Expect(alice.Locator("#new-auth-key")).ToContainTextAsync("weft-auth.");
        });
        // The same session without the console's header (as a form on another site would post): refused.
        var forged = await alice.APIRequest.PostAsync(api + $"tailnets/{acme.Id}/auth-keys", new() { DataObject = new { } });
        Assert.Equal(403, forged.Status);
        Assert.Contains("X-Weft-Console", await forged.TextAsync());
        var who = await alice.APIRequest.GetAsync(api + "session");
        Assert.Equal(200, who.Status);
        Assert.Contains("\"role\":\"admin\"", (await who.TextAsync()).Replace(" ", ""));
        // An API key acts as an owner (it makes owners): an admin who could issue one would make herself owner with it.
        var issued = await alice.APIRequest.PostAsync(api + "api-keys",
            new() { DataObject = new { scope = "tailnet" }, Headers = new Dictionary<string, string> { ["X-Weft-Console"] = "1" } });
        Assert.Equal(403, issued.Status);
        Assert.Contains("only an owner issues API keys", await issued.TextAsync());

        // Bob, an auditor: he reads, and every change is refused.
        var bob = await browser.NewPageAsync();
        await Browser.Step(bob, output, "console-auditor", async () =>
        {
            await SignInToConsole(bob, coordinator, "console-acme", OidcTestProvider.Bob);
            await Expect(bob.Locator("#who")).ToHaveTextAsync("bob@example.com (auditor)");
            await bob.ClickAsync("nav.tabs >> text=Auth keys");
            await bob.ClickAsync("#create-auth-key");
            await Expect(bob.Locator("#status")).ToContainTextAsync("auditors read the tailnet and change nothing");
        });

        // Mallory signs in at the provider, but is only a member here: no console.
        var mallory = await browser.NewPageAsync();
        await Browser.Step(mallory, output, "console-member", async () =>
        {
            await SignInToConsole(mallory, coordinator, "console-acme", OidcTestProvider.Mallory);
            await Expect(mallory.Locator("#login-error")).ToHaveAttributeAsync("data-code", "console_forbidden");
        });
        var users = (await (await coordinator.Http.GetAsync($"/api/v1/tailnets/{acme.Id}/users")).ReadAs<UserListResource>(HttpStatusCode.OK)).Users;
        Assert.Equal(["admin", "auditor", "member"], users.OrderBy(u => u.Name).Select(u => u.Role));
        Assert.All(users, u => Assert.Equal(provider.IssuerIdentifier, u.Issuer));

        // Demoted, Alice loses access at her next request; signed out, Bob has no session.
        using (var demote = await coordinator.Http.PutAsJsonAsync($"/api/v1/tailnets/{acme.Id}/users/alice@example.com/role", new { role = "member" }))
            Assert.Equal(HttpStatusCode.OK, demote.StatusCode);
        Assert.Equal(403, (await alice.APIRequest.GetAsync(api + $"tailnets/{acme.Id}/devices")).Status);
        await Browser.Step(bob, output, "console-sign-out", async () =>
        {
            await bob.ClickAsync("#sign-out");
            await Expect(bob.Locator("#sso-tailnet")).ToBeVisibleAsync();
        });
        Assert.Equal(401, (await bob.APIRequest.GetAsync(api + "session")).Status);
    }

    private static async Task SignInToConsole(IPage page, TestCoordinator coordinator, string tailnet, OidcTestUser user)
    {
        await page.GotoAsync(new Uri(coordinator.Api, "admin").ToString());
        await page.FillAsync("#sso-tailnet", tailnet);
        await page.ClickAsync("#sso-sign-in");
        await Browser.SignInAtProvider(page, user);
    }
}
