using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.DependencyInjection;
using Weft.Cluster.Identity;
using Weft.Cluster.Tests.Support;
using Weft.ClusterLab;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Api;

/// <summary>
/// <c>/api/v1/tailnets/{tailnet}/sso</c> over real HTTP against a coordinator on SQLite: set, read
/// back without the secret, survive a restart, refuse bad bodies without writing, and stay inside
/// the tailnet a key belongs to. The provider is a real one (npm's oidc-provider on loopback): a set
/// reads its discovery document.
/// </summary>
public sealed class SsoApiTests
{
    private const string Secret = "client-secret-never-returned";

    [Fact]
    public async Task A_tailnet_provider_is_set_read_back_without_its_secret_kept_across_a_restart_and_removed()
    {
        await using var provider = await OidcTestProvider.StartAsync([new OidcTestClient("weft-acme", Secret, ["http://127.0.0.1:1/unused"])]);
        var issuer = provider.IssuerIdentifier;
        await using var storage = TestStorage.NewSqlite();
        string tailnetId;
        await using (var coordinator = await TestCoordinator.StartAsync(storage))
        {
            var tailnet = await coordinator.Http.CreateTailnet("sso-acme");
            tailnetId = tailnet.Id;
            Assert.Equal("not_found", (await (await coordinator.Http.GetAsync($"/api/v1/tailnets/{tailnet.Id}/sso")).ReadError(HttpStatusCode.NotFound)).Code);

            using var response = await coordinator.Http.PutAsJsonAsync($"/api/v1/tailnets/{tailnet.Name}/sso",
                new SetSsoRequest(issuer + "/", "weft-acme", Secret, ["Example.com"], ["eng"], Scopes: ["email", "groups"]), AdminJson.Options);
            var text = await response.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.DoesNotContain(Secret, text);
            var set = await (await coordinator.Http.GetAsync($"/api/v1/tailnets/{tailnet.Id}/sso")).ReadAs<SsoResource>(HttpStatusCode.OK);
            Assert.Equal(issuer, set.Issuer);
            Assert.Equal("weft-acme", set.ClientId);
            Assert.True(set.ClientSecretSet);
            Assert.Equal(["example.com"], set.AllowedDomains);
            Assert.Equal(["eng"], set.AllowedGroups);
            Assert.Equal("groups", set.GroupsClaim);
            Assert.Equal(["openid", "email", "groups"], set.Scopes);
        }

        // The secret rests sealed: nowhere in the database's files (journal, snapshots, WAL) in clear.
        foreach (var file in Directory.EnumerateFiles(storage.DataDirectory, "*", SearchOption.AllDirectories))
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var copy = new MemoryStream();
            await stream.CopyToAsync(copy);
            Assert.True(copy.ToArray().AsSpan().IndexOf(System.Text.Encoding.UTF8.GetBytes(Secret)) < 0, $"the client secret is in clear in {file}");
        }

        await using var restarted = await TestCoordinator.StartAsync(storage);
        var kept = await (await restarted.Http.GetAsync($"/api/v1/tailnets/{tailnetId}/sso")).ReadAs<SsoResource>(HttpStatusCode.OK);
        Assert.Equal("weft-acme", kept.ClientId);
        Assert.Equal(["example.com"], kept.AllowedDomains);

        Assert.Equal(HttpStatusCode.NoContent, (await restarted.Http.DeleteAsync($"/api/v1/tailnets/{tailnetId}/sso")).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await restarted.Http.DeleteAsync($"/api/v1/tailnets/{tailnetId}/sso")).StatusCode);
        await (await restarted.Http.GetAsync($"/api/v1/tailnets/{tailnetId}/sso")).ReadError(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task A_tailnets_sign_in_scheme_is_no_handler_of_every_request_is_rebuilt_for_new_settings_and_goes_with_its_provider()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var coordinator = await TestCoordinator.StartAsync(storage);
        var signIn = coordinator.Services.GetRequiredService<TailnetSignIn>();
        var schemes = coordinator.Services.GetRequiredService<IAuthenticationSchemeProvider>();
        var tailnet = await coordinator.Http.CreateTailnet("sso-schemes");
        var scheme = TailnetSignIn.SchemeFor(tailnet.Id);
        var callback = new Uri(coordinator.Api, $"login/oidc/{tailnet.Id}/callback").AbsoluteUri;
        await using var provider = await OidcTestProvider.StartAsync(
            [new OidcTestClient("weft-elsewhere", Secret, ["http://127.0.0.1:1/unused"]), new OidcTestClient("weft", Secret, [callback])]);
        using var browser = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = coordinator.Api };

        // A provider that refuses to start the sign-in (this coordinator's redirect URI is not registered
        // with the client) is a page that says so, not an internal error.
        await coordinator.Http.SetProvider(tailnet.Id, provider.IssuerIdentifier, "weft-elsewhere", Secret);
        using (var refused = await browser.GetAsync($"/admin/login/{tailnet.Name}"))
        {
            Assert.Equal(HttpStatusCode.BadGateway, refused.StatusCode);
            var page = await refused.Content.ReadAsStringAsync();
            Assert.Contains("data-code=\"login_provider_refused\"", page);
            Assert.Contains("redirect_uri did not match", page);
        }

        // Set right, the next sign-in rebuilds the tailnet's scheme and sends the browser to the provider.
        await coordinator.Http.SetProvider(tailnet.Id, provider.IssuerIdentifier, "weft", Secret);
        using (var challenge = await browser.GetAsync($"/admin/login/{tailnet.Name}"))
            Assert.StartsWith(provider.IssuerIdentifier, challenge.Headers.Location?.AbsoluteUri);
        Assert.NotNull(await schemes.GetSchemeAsync(scheme));
        Assert.Equal(1, signIn.SchemeCount);
        // The authentication middleware does not run it for every request: only its callback runs it.
        Assert.DoesNotContain(await schemes.GetRequestHandlerSchemesAsync(), s => s.Name.StartsWith(TailnetSignIn.SchemePrefix, StringComparison.Ordinal));

        // Once the tailnet has no provider, the next sign-in finds none and the scheme goes.
        Assert.Equal(HttpStatusCode.NoContent, (await coordinator.Http.DeleteAsync($"/api/v1/tailnets/{tailnet.Id}/sso")).StatusCode);
        using (var none = await browser.GetAsync($"/admin/login/{tailnet.Name}"))
            Assert.Contains("has no identity provider", await none.Content.ReadAsStringAsync());
        Assert.Null(await schemes.GetSchemeAsync(scheme));
        Assert.Equal(0, signIn.SchemeCount);
    }

    [Theory]
    [InlineData("""{"issuer":"http://id.example.com","clientId":"w","clientSecret":"s"}""", "must use https")]
    [InlineData("""{"issuer":"https://id.example.com","clientId":"w"}""", "missing required field 'clientSecret'")]
    [InlineData("""{"issuer":"https://id.example.com","clientId":"w","clientSecret":"s","allowedDomains":"example.com"}""", "allowedDomains")]
    [InlineData("""{"issuer":"https://id.example.com","clientId":"w","clientSecret":"s","allowedDomains":["not a domain"]}""", "is not a domain name")]
    [InlineData("""{"issuer":"https://id.example.com","clientId":"w","clientSecret":"s","colour":"blue"}""", "unknown field 'colour'")]
    public async Task A_bad_provider_body_is_refused_with_its_reason_and_writes_nothing(string body, string expected)
    {
        await using var storage = TestStorage.NewSqlite();
        await using var coordinator = await TestCoordinator.StartAsync(storage);
        var tailnet = await coordinator.Http.CreateTailnet("sso-bad");

        using var content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
        var error = await (await coordinator.Http.PutAsync($"/api/v1/tailnets/{tailnet.Id}/sso", content)).ReadError(HttpStatusCode.BadRequest);

        Assert.Contains(expected, error.Message);
        await (await coordinator.Http.GetAsync($"/api/v1/tailnets/{tailnet.Id}/sso")).ReadError(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task A_provider_that_does_not_answer_or_names_another_issuer_is_refused_before_anything_is_stored()
    {
        await using var provider = await OidcTestProvider.StartAsync([new OidcTestClient("weft", Secret, ["http://127.0.0.1:1/unused"])]);
        await using var storage = TestStorage.NewSqlite();
        await using var coordinator = await TestCoordinator.StartAsync(storage);
        var tailnet = await coordinator.Http.CreateTailnet("sso-discovery");
        var path = $"/api/v1/tailnets/{tailnet.Id}/sso";

        var silent = $"http://127.0.0.1:{CoordinatorNode.FreeTcpPort()}";
        var unreachable = await (await coordinator.Http.PutAsJsonAsync(path, new SetSsoRequest(silent, "weft", Secret), AdminJson.Options)).ReadError(HttpStatusCode.BadRequest);
        Assert.Contains($"discovery document at {silent}/.well-known/openid-configuration could not be read", unreachable.Message);

        // The same provider under another name: its document names its real issuer, which tokens will carry.
        var aliased = provider.IssuerIdentifier.Replace("127.0.0.1", "localhost");
        var mismatch = await (await coordinator.Http.PutAsJsonAsync(path, new SetSsoRequest(aliased, "weft", Secret), AdminJson.Options)).ReadError(HttpStatusCode.BadRequest);
        Assert.Contains($"calls itself '{provider.IssuerIdentifier}'", mismatch.Message);

        await (await coordinator.Http.GetAsync(path)).ReadError(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task A_cluster_that_does_not_allow_loopback_providers_refuses_one_without_contacting_it()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var coordinator = await TestCoordinator.StartAsync(storage, [new("Weft:Api:AllowLoopbackIdentityProviders", "false")]);
        var tailnet = await coordinator.Http.CreateTailnet("sso-loopback");

        var refused = await (await coordinator.Http.PutAsJsonAsync($"/api/v1/tailnets/{tailnet.Id}/sso", new SetSsoRequest("http://127.0.0.1:22", "weft", Secret), AdminJson.Options))
            .ReadError(HttpStatusCode.BadRequest);

        Assert.Contains("Weft:Api:AllowLoopbackIdentityProviders", refused.Message);
    }

    [Fact]
    public async Task A_tailnet_key_sets_its_own_provider_and_cannot_see_or_change_another_tailnets()
    {
        await using var provider = await OidcTestProvider.StartAsync([new OidcTestClient("weft", Secret, ["http://127.0.0.1:1/unused"])]);
        var issuer = provider.IssuerIdentifier;
        await using var storage = TestStorage.NewSqlite();
        await using var coordinator = await TestCoordinator.StartAsync(storage);
        var mine = await coordinator.Http.CreateTailnet("sso-mine");
        var theirs = await coordinator.Http.CreateTailnet("sso-theirs");
        await (await coordinator.Http.PutAsJsonAsync($"/api/v1/tailnets/{theirs.Id}/sso", new SetSsoRequest(issuer, "theirs", Secret), AdminJson.Options))
            .ReadAs<SsoResource>(HttpStatusCode.OK);
        var issued = await (await coordinator.Http.PostAsJsonAsync("/api/v1/api-keys", new { scope = "tailnet", tailnet = mine.Id, description = "sso" }))
            .ReadAs<CreatedApiKeyResource>(HttpStatusCode.Created);
        using var tenant = TestCoordinator.NewClient(coordinator.Api, issued.Key);

        await (await tenant.PutAsJsonAsync($"/api/v1/tailnets/{mine.Id}/sso", new SetSsoRequest(issuer, "mine", Secret), AdminJson.Options))
            .ReadAs<SsoResource>(HttpStatusCode.OK);
        await (await tenant.GetAsync($"/api/v1/tailnets/{theirs.Id}/sso")).ReadError(HttpStatusCode.NotFound);
        await (await tenant.PutAsJsonAsync($"/api/v1/tailnets/{theirs.Name}/sso", new SetSsoRequest(issuer, "evil", Secret), AdminJson.Options))
            .ReadError(HttpStatusCode.NotFound);
        await (await tenant.DeleteAsync($"/api/v1/tailnets/{theirs.Id}/sso")).ReadError(HttpStatusCode.NotFound);

        var untouched = await (await coordinator.Http.GetAsync($"/api/v1/tailnets/{theirs.Id}/sso")).ReadAs<SsoResource>(HttpStatusCode.OK);
        Assert.Equal("theirs", untouched.ClientId);
    }
}
