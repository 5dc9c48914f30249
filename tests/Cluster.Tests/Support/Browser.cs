using Microsoft.Playwright;
using Weft.ClusterLab;
using Xunit.Abstractions;

namespace Weft.Cluster.Tests.Support;

// Shared (as a linked source file) by Cluster.Tests and Integration.Tests.

/// <summary>
/// Browser tests run one at a time, as the tests of one collection do: each starts a chromium and a
/// coordinator on a 2-core machine. They may run beside other collections, whose tests spend most of
/// their time waiting; the collections that run coordinator processes still run alone.
/// </summary>
[CollectionDefinition(Name)]
public sealed class BrowserCollection
{
    public const string Name = "browser";
}

/// <summary>Headless chromium through Playwright, and what the tests keep when a step fails.</summary>
public sealed class Browser : IAsyncDisposable
{
    public const string ChromiumPath = "/usr/bin/chromium";

    /// <summary>Waits for what a page should show: generous, as the tests assert behaviour, not speed.</summary>
    private static readonly float ExpectTimeoutMs = 45_000;

    private readonly IPlaywright _playwright;
    private readonly IBrowser _browser;

    private Browser(IPlaywright playwright, IBrowser browser)
    {
        _playwright = playwright;
        _browser = browser;
    }

    public static string ArtifactsDirectory => Path.Combine(AppContext.BaseDirectory, "artifacts");

    public static async Task<Browser> LaunchAsync()
    {
        if (!File.Exists(ChromiumPath))
        {
            const string reason = $"no browser: Debian's chromium is not at {ChromiumPath} (./test.sh installs it)";
            if (Environment.GetEnvironmentVariable("WEFT_REQUIRE_ALL_TESTS") == "1") throw new InvalidOperationException(reason);
            Skip.If(true, reason);
        }
        Assertions.SetDefaultExpectTimeout(ExpectTimeoutMs);
        var playwright = await Playwright.CreateAsync();
        var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath,
            Headless = true,
            // As root (CI), chromium's sandbox cannot start.
            Args = ["--no-sandbox"],
        });
        return new Browser(playwright, browser);
    }

    public async Task<IPage> NewPageAsync()
    {
        var page = await _browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 900 } });
        page.SetDefaultTimeout(ExpectTimeoutMs);
        return page;
    }

    /// <summary>Runs a test's steps; when one fails, saves the page as it was and says where.</summary>
    public static async Task Step(IPage page, ITestOutputHelper output, string name, Func<Task> steps)
    {
        var consoleLines = new List<string>();
        page.Console += (_, message) => consoleLines.Add($"{message.Type}: {message.Text}");
        try
        {
            await steps();
        }
        catch (Exception e) when (e is not SkipException)
        {
            var file = await SaveScreenshot(page, output, name + "-failure");
            foreach (var line in consoleLines) output.WriteLine("browser console " + line);
            throw new Xunit.Sdk.XunitException($"{e.Message}\n(screenshot of the page: {file})\n{e}");
        }
    }

    /// <summary>
    /// At the test identity provider (<see cref="OidcTestProvider"/>): its login page, unless it remembers
    /// the person in this browser, then its consent page, unless they consented before. Returns on the page
    /// the provider sends the browser back to (or a refusal).
    /// </summary>
    public static async Task SignInAtProvider(IPage page, OidcTestUser user)
    {
        const string back = "#login-done, #login-error, #who";
        await page.Locator($"{OidcTestProvider.Selectors.LoginField}, {OidcTestProvider.Selectors.ConsentAllowButton}, {back}").First.WaitForAsync();
        if (await page.Locator(OidcTestProvider.Selectors.LoginField).IsVisibleAsync())
        {
            await page.FillAsync(OidcTestProvider.Selectors.LoginField, user.Id);
            await page.FillAsync(OidcTestProvider.Selectors.PasswordField, "any password");
            await page.ClickAsync(OidcTestProvider.Selectors.SignInButton);
            await page.Locator($"{OidcTestProvider.Selectors.ConsentAllowButton}, {back}").First.WaitForAsync();
        }
        if (await page.Locator(OidcTestProvider.Selectors.ConsentAllowButton).IsVisibleAsync())
            await page.ClickAsync(OidcTestProvider.Selectors.ConsentAllowButton);
    }

    public static async Task<string> SaveScreenshot(IPage page, ITestOutputHelper output, string name)
    {
        Directory.CreateDirectory(ArtifactsDirectory);
        var file = Path.Combine(ArtifactsDirectory, name + ".png");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = file, FullPage = true });
        output.WriteLine($"screenshot: {file}");
        return file;
    }

    public async ValueTask DisposeAsync()
    {
        await _browser.CloseAsync();
        _playwright.Dispose();
    }
}
