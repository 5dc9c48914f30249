using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using Weft.Cluster.Tests.Support;
using Weft.ClusterLab;
using Weft.Contracts.Admin;
using Xunit.Abstractions;

namespace Weft.Cluster.Tests.WebConsole;

/// <summary>
/// The console at /admin in a real browser (Debian's chromium, headless, driven by Playwright) against
/// a real coordinator with simulated agents (real ControlClients on their own streams). On a failure
/// the page is saved as a screenshot next to the test binaries (artifacts/), and the mesh view is
/// always saved there as console-mesh.png.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class AdminConsoleBrowserTests(ITestOutputHelper output)
{
    private const string BadPolicy = """
        {
          "acls": [
            {"action": "deny", "src": ["*"], "dst": ["*:*"]},
          ],
        }
        """;

    private const string GoodPolicy = """
        {
          // everyone may reach everyone
          "acls": [
            {"action": "accept", "src": ["*"], "dst": ["*:*"]},
          ],
        }
        """;

    [SkippableFact]
    public async Task An_operator_creates_a_tailnet_and_a_key_sees_devices_arrive_edits_the_policy_and_expires_a_device()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var coordinator = await TestCoordinator.StartAsync(storage);
        await using var agents = new AgentSystem();
        await using var browser = await Browser.LaunchAsync();
        var page = await browser.NewPageAsync();

        await Browser.Step(page, output, "console-operator", async () =>
        {
            await page.GotoAsync(new Uri(coordinator.Api, "admin").ToString());
            await page.FillAsync("#api-key", TestCoordinator.OperatorKey);
            await page.ClickAsync("#sign-in");
            await Assertions.Expect(page.Locator("#nav-cluster")).ToBeVisibleAsync();

            // A tailnet and an auth key, created in the console.
            await page.FillAsync("#new-tailnet-name", "console-e2e");
            await page.ClickAsync("#create-tailnet");
            await Assertions.Expect(page).ToHaveURLAsync(new Regex("/admin#/tailnets/console-e2e$")); // polls: a hash route fires no load event to wait for
            await page.ClickAsync("nav.tabs >> text=Auth keys");
            await page.CheckAsync("#auth-key-reusable");
            await page.ClickAsync("#create-auth-key");
            var authKey = (await page.Locator("#new-auth-key").TextContentAsync())!.Trim();
            Assert.StartsWith("weft-auth.", authKey);

            // Devices appear by themselves (the page holds the tailnet's event stream).
            await page.ClickAsync("nav.tabs >> text=Devices");
            using var first = TestAgent.Start(agents, coordinator.Control, "browser-one", authKey, endpoints: ["127.0.0.1:41001"]);
            using var second = TestAgent.Start(agents, coordinator.Control, "browser-two", authKey);
            using var third = TestAgent.Start(agents, coordinator.Control, "browser-three", authKey, endpoints: ["127.0.0.1:41003"]);
            foreach (var hostname in new[] { "browser-one", "browser-two", "browser-three" })
                await Assertions.Expect(page.Locator($"#devices tr[data-hostname='{hostname}'] [data-status]")).ToHaveAttributeAsync("data-status", "online");

            // The cluster view: this one node, the three agents connected to it, and its tailnet and device entities.
            await page.ClickAsync("#nav-cluster");
            var node = page.Locator("#cluster-nodes tbody tr");
            await Assertions.Expect(node).ToHaveCountAsync(1);
            await Assertions.Expect(node.Locator("td").Nth(2)).ToHaveTextAsync("3");
            await Assertions.Expect(page.Locator("#cluster-nodes thead")).ToContainTextAsync("device shards / entities");
            await page.GoBackAsync();

            // The policy editor checks as one types: the bad action (deny) is reported at its line (3).
            await page.ClickAsync("nav.tabs >> text=Policy");
            await page.FillAsync("#policy-text", BadPolicy);
            var error = page.Locator(".policy-errors li").First;
            await Assertions.Expect(error).ToHaveAttributeAsync("data-line", "3");
            await Assertions.Expect(error).ToContainTextAsync("\"deny\" is not allowed");
            await Assertions.Expect(page.Locator(".gutter .has-error")).ToHaveTextAsync("3");
            await page.ClickAsync("#save-policy");
            await Assertions.Expect(page.Locator("#status")).ToContainTextAsync("Policy not saved");
            await page.FillAsync("#policy-text", GoodPolicy);
            await Assertions.Expect(page.Locator(".policy-ok")).ToContainTextAsync("Valid");
            await page.ClickAsync("#save-policy");
            await Assertions.Expect(page.Locator("#status")).ToContainTextAsync("Policy saved");
            await page.FillAsync("#test-src", "100.64.0.1");
            await page.FillAsync("#test-dst", "100.64.0.2:22");
            await page.ClickAsync("#run-test");
            await Assertions.Expect(page.Locator("#test-result")).ToContainTextAsync("Allowed");

            // The mesh: three devices online; one and three report UDP endpoints (direct), two does not (relayed).
            await page.ClickAsync("nav.tabs >> text=Mesh");
            await Assertions.Expect(page.Locator("#mesh g[data-status='online']")).ToHaveCountAsync(3);
            await Assertions.Expect(page.Locator("#mesh line.direct")).ToHaveCountAsync(1);
            await Assertions.Expect(page.Locator("#mesh line.relayed")).ToHaveCountAsync(2);
            await Browser.SaveScreenshot(page, output, "console-mesh");

            // Expired in the console, the device goes: its state turns expired, and its links leave the mesh.
            await page.ClickAsync("nav.tabs >> text=Devices");
            page.Dialog += (_, dialog) => dialog.AcceptAsync();
            await page.ClickAsync("#devices tr[data-hostname='browser-one'] button[data-action='expire']");
            await Assertions.Expect(page.Locator("#devices tr[data-hostname='browser-one'] [data-status]")).ToHaveAttributeAsync("data-status", "expired");
            await page.ClickAsync("nav.tabs >> text=Mesh");
            await Assertions.Expect(page.Locator("#mesh g[data-status='expired']")).ToHaveCountAsync(1);
            await Assertions.Expect(page.Locator("#mesh line.direct")).ToHaveCountAsync(0);
            await Assertions.Expect(page.Locator("#mesh line.relayed")).ToHaveCountAsync(1);
        });
    }

    [SkippableFact]
    public async Task A_tailnet_key_sees_only_its_own_tailnet_even_when_the_address_names_another()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var coordinator = await TestCoordinator.StartAsync(storage);
        var mine = await Create(coordinator, "tenant-mine");
        var theirs = await Create(coordinator, "tenant-theirs");
        var issued = await (await coordinator.Http.PostAsJsonAsync("/api/v1/api-keys", new { scope = "tailnet", tailnet = mine.Id, description = "console" }))
            .ReadAs<CreatedApiKeyResource>(System.Net.HttpStatusCode.Created);
        await using var browser = await Browser.LaunchAsync();
        var page = await browser.NewPageAsync();

        await Browser.Step(page, output, "console-tenant", async () =>
        {
            var console = new Uri(coordinator.Api, "admin").ToString();
            await page.GotoAsync(console);
            await page.FillAsync("#api-key", issued.Key);
            await page.ClickAsync("#sign-in");
            // A tailnet key lands on its own tailnet; the cluster view is not offered.
            await Assertions.Expect(page).ToHaveURLAsync(new Regex("/admin#/tailnets/tenant-mine$")); // polls: a hash route fires no load event to wait for
            await Assertions.Expect(page.Locator("#nav-cluster")).ToBeHiddenAsync();

            foreach (var address in new[] { $"#/tailnets/{theirs.Name}", $"#/tailnets/{theirs.Id}/devices", $"#/tailnets/{theirs.Id}/policy", $"#/tailnets/{theirs.Id}/mesh" })
            {
                await page.GotoAsync(console + address);
                await Assertions.Expect(page.Locator("#page-error")).ToContainTextAsync("does not exist");
                Assert.DoesNotContain(theirs.Id, await page.Locator("main h2").AllTextContentsAsync() is var titles ? string.Join(" ", titles) : "");
            }
            await page.GotoAsync(console + "#/cluster");
            await Assertions.Expect(page.Locator("#page-error")).ToContainTextAsync("operator key");
            await page.GotoAsync(console + "#/");
            await Assertions.Expect(page).ToHaveURLAsync(new Regex("/admin#/tailnets/tenant-mine$")); // polls: a hash route fires no load event to wait for
        });
    }

    private static async Task<TailnetResource> Create(TestCoordinator coordinator, string name) =>
        await (await coordinator.Http.PostAsJsonAsync("/api/v1/tailnets", new { name })).ReadAs<TailnetResource>(System.Net.HttpStatusCode.Created);
}
