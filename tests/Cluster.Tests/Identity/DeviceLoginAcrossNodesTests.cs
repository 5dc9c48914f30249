using System.Net;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using Weft.Cluster.Tests.Support;
using Weft.ClusterLab;
using Weft.Contracts.Admin;
using Weft.NodeAgent.Control;
using Xunit.Abstractions;

using static Microsoft.Playwright.Assertions;

namespace Weft.Cluster.Tests.Identity;

/// <summary>
/// A sign-in is not tied to the node that started it: behind a load balancer the provider's answer
/// may come back to any node. Two coordinator processes on one PostgreSQL: the agent waits on node 1,
/// the person opens node 1's link, and the provider's redirect is delivered to node 2, which has never
/// used the tailnet's provider since an admin changed it (it builds its scheme again for the settings
/// in force and opens the state sealed with the cluster secret) and completes the login; the agent on
/// node 1 then runs.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class DeviceLoginAcrossNodesTests(ITestOutputHelper output)
{
    private const string Secret = "cluster-client-secret";

    [SkippableFact]
    public async Task A_sign_in_started_on_one_node_is_completed_by_another()
    {
        await using var cluster = await TestCluster.StartAsync(2, new Dictionary<string, string> { ["Weft__Api__AllowLoopbackIdentityProviders"] = "true" });
        var (one, two) = (cluster.Nodes[0], cluster.Nodes[1]);
        var tailnet = await cluster.Api(0).CreateTailnet("across-nodes");
        var callbackOne = new Uri(one.Api, $"login/oidc/{tailnet.Id}/callback").AbsoluteUri;
        var callbackTwo = new Uri(two.Api, $"login/oidc/{tailnet.Id}/callback").AbsoluteUri;
        await using var provider = await OidcTestProvider.StartAsync(
            [new OidcTestClient("weft", Secret, [callbackOne]), new OidcTestClient("weft-before", "the-secret-before", [callbackTwo])]);
        // Node 2 built the tailnet's scheme for the provider settings before an admin changed them through
        // node 1 (a console sign-in that started on node 2 under the old client): its callback must use the new ones.
        await cluster.Api(0).SetProvider(tailnet.Id, provider.IssuerIdentifier, "weft-before", "the-secret-before");
        using (var browserOfAnAdmin = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = two.Api })
        using (var challenge = await browserOfAnAdmin.GetAsync($"/admin/login/{tailnet.Id}"))
            Assert.Contains("client_id=weft-before", challenge.Headers.Location?.Query);
        await cluster.Api(0).SetProvider(tailnet.Id, provider.IssuerIdentifier, "weft", Secret);
        await using var agents = new AgentSystem();
        await using var browser = await Browser.LaunchAsync();

        using var laptop = TestAgent.Start(agents, one.Control, "roaming-laptop", authKey: null, tailnet: "across-nodes");
        await laptop.WaitForState(ControlState.WaitingForLogin);
        var link = (await Eventually.Until(async () => (await laptop.Status()).LoginUrl, url => url is not null, "the login link"))!;
        Assert.StartsWith(one.Api.AbsoluteUri, link);

        var page = await browser.NewPageAsync();
        var delivered = new List<string>();
        // The load balancer: the provider's answer for node 1's callback goes to node 2. (Playwright does
        // not route the requests of a redirect chain, so the chain that follows the consent is walked here.)
        await page.RouteAsync(new Regex("/interaction/[^/]+/consent$"), async route =>
        {
            var url = route.Request.Url;
            var response = await route.FetchAsync(new RouteFetchOptions { MaxRedirects = 0 });
            while (response.Status is 302 or 303 && response.Headers["location"] is var location && !location.StartsWith(callbackOne, StringComparison.Ordinal))
            {
                url = new Uri(new Uri(url), location).AbsoluteUri;
                response = await page.Context.APIRequest.GetAsync(url, new APIRequestContextOptions { MaxRedirects = 0 });
            }
            var moved = response.Headers["location"].Replace(one.Api.AbsoluteUri, two.Api.AbsoluteUri);
            delivered.Add(moved);
            await route.FulfillAsync(new RouteFulfillOptions { Status = 303, Headers = new Dictionary<string, string> { ["Location"] = moved } });
        });
        await Browser.Step(page, output, "login-across-nodes", async () =>
        {
            await page.GotoAsync(link);
            await Browser.SignInAtProvider(page, OidcTestProvider.Bob);
            await Expect(page.Locator("#login-user")).ToHaveTextAsync("bob@example.com");
        });
        Assert.Single(delivered);
        Assert.StartsWith(two.Api.AbsoluteUri, delivered[0]);

        await laptop.WaitForState(ControlState.Running);
        var device = await cluster.Api(1).GetDevice(tailnet.Id, laptop.DeviceId!);
        Assert.Equal(("bob@example.com", "active"), (device.User, device.Status));
    }
}
