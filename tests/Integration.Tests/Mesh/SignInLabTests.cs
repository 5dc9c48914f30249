using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using Weft.Cluster.Tests.Support;
using Weft.ClusterLab;
using Weft.Lab;
using Xunit.Abstractions;

using static Microsoft.Playwright.Assertions;

namespace Weft.Integration.Tests.Mesh;

/// <summary>
/// Interactive sign-in on real machines: agents in network namespaces run <c>weft-agent up</c>
/// without a key; it prints a login link and waits; a person signs in at the tailnet's provider
/// (npm's oidc-provider) in a real browser (headless chromium); the agent runs by itself, its device
/// is that person's, and the policy's rule on the provider's group decides whose traffic passes.
/// </summary>
[Collection(BrowserCollection.Name)]
public class SignInLabTests(ITestOutputHelper output)
{
    private const string Hub = "198.18.0.254";
    private const string Secret = "lab-client-secret";

    private const string Policy = """
        {
          "tagOwners": {"tag:server": []},
          // The provider's group eng (Alice is in it, Bob is not) may reach the servers.
          "acls": [
            {"action": "accept", "src": ["group:eng"], "dst": ["tag:server:*"]},
          ],
        }
        """;

    [SkippableFact]
    public async Task Up_prints_a_link_the_person_signs_in_in_a_browser_the_agent_runs_as_theirs_and_the_group_rule_admits_only_their_traffic()
    {
        await using var lab = LabTest.Open("ping");
        await LabTest.WithLogsOnFailure(lab, "sign-in", async () =>
        {
            var segment = Segment.Create(lab);
            segment.AttachHost(Hub + "/24");
            var coordinator = WeftCoordinator.Start(lab, Hub, new Dictionary<string, string> { ["Weft__Api__AllowLoopbackIdentityProviders"] = "true" });
            var tailnet = await coordinator.CreateTailnet("sign-in");
            await using var provider = await OidcTestProvider.StartAsync([
                new OidcTestClient("weft-lab", Secret, [new Uri(coordinator.Api, $"login/oidc/{tailnet}/callback").AbsoluteUri]),
            ]);
            using (var set = await coordinator.Http.PutAsJsonAsync($"/api/v1/tailnets/{tailnet}/sso", new
            {
                issuer = provider.IssuerIdentifier, clientId = "weft-lab", clientSecret = Secret, allowedDomains = new[] { "example.com" },
                scopes = new[] { "email", "groups" },
            }))
                Assert.True(set.IsSuccessStatusCode, await set.Content.ReadAsStringAsync());
            await coordinator.Send(HttpMethod.Post, $"/api/v1/tailnets/{tailnet}/policy", Policy);

            var machines = new[] { "srv", "alice", "bob" }.Select((name, i) => (name, machine: lab.AddNamespace(name), address: $"198.18.0.{i + 1}/24")).ToList();
            foreach (var (_, machine, address) in machines) segment.Attach(machine, address);
            var server = WeftAgent.Start(machines[0].machine, "srv", coordinator.Control, await coordinator.CreateAuthKey(tailnet, tags: ["tag:server"]));
            await using var browser = await Browser.LaunchAsync();

            var alice = await SignInWithUp(lab, machines[1].machine, "alice", coordinator, browser, person: OidcTestProvider.Alice);
            var bob = await SignInWithUp(lab, machines[2].machine, "bob", coordinator, browser, person: OidcTestProvider.Bob);

            // Each device is its person's, as the provider named them.
            foreach (var (agent, email) in new[] { (alice, "alice@example.com"), (bob, "bob@example.com") })
            {
                var status = agent.Status();
                Assert.Equal("running", status.GetProperty("state").GetString());
                var id = status.GetProperty("deviceId").GetString();
                var device = await coordinator.Http.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/{tailnet}/devices/{id}");
                Assert.Equal(email, device.GetProperty("user").GetString());
            }

            // group:eng (from the provider, not the policy's own groups) admits Alice's traffic to the server, not Bob's.
            var serverAddress = server.Addresses().V4;
            alice.WaitForPeers("srv");
            Assert.True(Traffic.PingUntilAnswered(alice.Machine, serverAddress, TimeSpan.FromSeconds(20)) is not null, "alice (group:eng) reaches the server");
            Assert.Equal(0, Traffic.Ping(bob.Machine, serverAddress, 3, waitSeconds: 1));
        });
    }

    /// <summary>A daemon, then <c>weft-agent up</c> without a key: it prints the link; the person signs in; up ends with success.</summary>
    private async Task<WeftAgent> SignInWithUp(Lab.Lab lab, Lab.Namespace machine, string name, WeftCoordinator coordinator, Browser browser, OidcTestUser person)
    {
        var agent = WeftAgent.StartDaemon(machine, name);
        var up = agent.StartCli($"weft-agent up ({name})", "up", "--login-server", coordinator.Control.ToString(), "--tailnet", "sign-in", "--hostname", name);
        up.WaitForOutput("To sign in and add this device to the tailnet, visit:", TimeSpan.FromSeconds(60));
        var link = Regex.Match(up.Output, @"visit:\s+(http://\S+)").Groups[1].Value;
        Assert.StartsWith(new Uri(coordinator.Api, "login/").AbsoluteUri, link);

        var page = await browser.NewPageAsync();
        await Browser.Step(page, output, "lab-sign-in-" + name, async () =>
        {
            await page.GotoAsync(link);
            await Browser.SignInAtProvider(page, person);
            await Expect(page.Locator("#login-user")).ToHaveTextAsync(person.Email);
        });

        // up goes on by itself once the sign-in is done.
        Assert.True(up.WaitForExit(TimeSpan.FromSeconds(60)) == 0, $"weft-agent up did not end with success:\n{up.Output}");
        Assert.Contains("Success", up.Output);
        return agent;
    }
}
