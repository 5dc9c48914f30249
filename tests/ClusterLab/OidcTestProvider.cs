using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace Weft.ClusterLab;

/// <summary>
/// A confidential client registered at an <see cref="OidcTestProvider"/>: authorization code flow
/// with PKCE (S256), at the token endpoint authenticated by client_secret_basic or client_secret_post
/// alike.
/// </summary>
/// <param name="ClientId">The client_id the relying party sends.</param>
/// <param name="ClientSecret">The client secret the relying party authenticates with.</param>
/// <param name="RedirectUris">Every redirect_uri the provider accepts for this client, exactly (e.g. <c>http://127.0.0.1:5123/signin-oidc</c>).</param>
public sealed record OidcTestClient(string ClientId, string ClientSecret, IReadOnlyList<string> RedirectUris);

/// <summary>A user the test provider knows; the ID token's <c>sub</c> is its <paramref name="Id"/>.</summary>
/// <param name="Id">The account id, typed into the login form and issued as <c>sub</c> and <c>preferred_username</c>.</param>
/// <param name="Email">The <c>email</c> claim (scope <c>email</c>).</param>
/// <param name="EmailVerified">The <c>email_verified</c> claim (scope <c>email</c>).</param>
/// <param name="Name">The <c>name</c> claim (scope <c>profile</c>).</param>
/// <param name="Groups">The <c>groups</c> claim (scope <c>groups</c>), possibly empty.</param>
public sealed record OidcTestUser(string Id, string Email, bool EmailVerified, string Name, IReadOnlyList<string> Groups);

/// <summary>
/// A real OpenID Connect provider (the npm package oidc-provider, run by <c>tests/oidc-provider/provider.mjs</c>
/// under Node.js) on 127.0.0.1, so that sign-in tests exercise a genuine authorization code + PKCE
/// flow, genuine RS256 ID tokens and genuine discovery rather than a stub. Each instance generates
/// its own signing key, so a second one serves as a "rogue" issuer: same users, different issuer and
/// keys. The users are fixed (<see cref="Alice"/>, <see cref="Bob"/>, <see cref="Mallory"/>); any
/// password is accepted, an unknown account id is refused on the login page. The claims of the
/// scopes <c>profile</c>, <c>email</c> and <c>groups</c> are put in the ID token itself (and served
/// by userinfo). The process (and anything it started) is killed when the provider is disposed.
/// </summary>
public sealed class OidcTestProvider : IAsyncDisposable
{
    /// <summary>alice@example.com (verified), "Alice Example", groups eng and admins.</summary>
    public static readonly OidcTestUser Alice = new("alice", "alice@example.com", EmailVerified: true, "Alice Example", ["eng", "admins"]);

    /// <summary>bob@example.com (verified), "Bob Example", group ops.</summary>
    public static readonly OidcTestUser Bob = new("bob", "bob@example.com", EmailVerified: true, "Bob Example", ["ops"]);

    /// <summary>mallory@evil.test (verified), "Mallory Outsider", in no group: an outsider with a valid sign-in.</summary>
    public static readonly OidcTestUser Mallory = new("mallory", "mallory@evil.test", EmailVerified: true, "Mallory Outsider", []);

    /// <summary>
    /// The elements of the provider's pages that a browser test uses (CSS selectors; every id starts
    /// with <c>idp-</c>, so none is mistaken for one of the relying party's).
    /// Sign-in: fill <see cref="LoginField"/> and <see cref="PasswordField"/>, click <see cref="SignInButton"/>;
    /// then, the first time an account signs in to a client in a browser context, click <see cref="ConsentAllowButton"/>.
    /// The provider remembers the sign-in for the browser context: a later sign-in there completes
    /// without any of its pages (unless the relying party sends prompt=login), so another user needs
    /// a fresh context.
    /// </summary>
    public static class Selectors
    {
        /// <summary>Login page: the account id (e.g. <c>alice</c>).</summary>
        public const string LoginField = "#idp-login";

        /// <summary>Login page: the password; any value is accepted.</summary>
        public const string PasswordField = "#idp-password";

        /// <summary>Login page: the "Sign-in" button.</summary>
        public const string SignInButton = "#idp-sign-in";

        /// <summary>Login page: shown after an unknown account id ("Unknown account: &lt;id&gt;"); the page stays on the login form.</summary>
        public const string LoginError = "#idp-login-error";

        /// <summary>Login page: the "Cancel" button; the relying party receives <c>error=access_denied</c>.</summary>
        public const string CancelButton = "#idp-cancel";

        /// <summary>Consent page: the "Allow" button, granting the requested scopes.</summary>
        public const string ConsentAllowButton = "#idp-consent-allow";

        /// <summary>Consent page: the "Deny" button; the relying party receives <c>error=access_denied</c>.</summary>
        public const string ConsentDenyButton = "#idp-consent-deny";

        /// <summary>Consent page: the account id that signed in.</summary>
        public const string ConsentAccount = "#idp-account-id";

        /// <summary>RP-initiated logout page: the "Yes, sign me out" button.</summary>
        public const string LogoutConfirmButton = "#idp-logout-confirm";

        /// <summary>Error page: the OAuth error code (e.g. <c>invalid_redirect_uri</c>).</summary>
        public const string Error = "#idp-error";

        /// <summary>Error page: the error's description.</summary>
        public const string ErrorDescription = "#idp-error-description";
    }

    /// <summary>How long the provider may take to print its ready line (Node starting, key generation).</summary>
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    /// <summary>How long installing the provider's npm dependencies may take, waiting for another test process's install included.</summary>
    private static readonly TimeSpan InstallTimeout = TimeSpan.FromMinutes(10);

    private const string ReadyPrefix = "ready ";

    /// <summary>Serializes this process's installs; a file lock does the same between test processes.</summary>
    private static readonly SemaphoreSlim InstallGate = new(1, 1);

    private static readonly JsonSerializerOptions ClientMetadataJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private readonly Process _process;
    private readonly StringBuilder _log;

    private OidcTestProvider(Process process, StringBuilder log, string issuerIdentifier)
    {
        _process = process;
        _log = log;
        IssuerIdentifier = issuerIdentifier;
        Issuer = new Uri(issuerIdentifier);
    }

    /// <summary>
    /// The issuer, <c>http://127.0.0.1:&lt;port&gt;</c>: the relying party's authority (discovery at
    /// <c>.well-known/openid-configuration</c> below it). As a <see cref="Uri"/> it prints with a
    /// trailing slash; <see cref="IssuerIdentifier"/> is the exact <c>iss</c> value.
    /// </summary>
    public Uri Issuer { get; }

    /// <summary>The issuer identifier exactly as the provider writes it in <c>iss</c> and in discovery (no trailing slash).</summary>
    public string IssuerIdentifier { get; }

    /// <summary>
    /// From now on the token endpoint returns ID tokens that are broken this way: "tamper" (the
    /// payload changed after signing), "foreign-issuer" (another iss, validly signed), or "normal".
    /// </summary>
    public async Task SetIdTokenModeAsync(string mode)
    {
        using var http = new HttpClient();
        using var answer = await http.PostAsync(new Uri(Issuer, "test/id-token-mode"), new StringContent(mode));
        if (!answer.IsSuccessStatusCode) throw new InvalidOperationException($"the test provider refused id-token mode {mode}: {await answer.Content.ReadAsStringAsync()}");
    }

    /// <summary>What the provider printed besides its ready line (warnings, and every authorization, token or interaction error): for a failing test's message.</summary>
    public string Log => Read(_log);

    /// <summary>
    /// Starts a provider with <paramref name="clients"/> registered, on a port the kernel picks, and
    /// returns once it serves. Installs the provider's npm dependencies first if this checkout lacks them.
    /// </summary>
    /// <exception cref="InvalidOperationException">node or npm is not installed, or the provider exited before it was ready (its output is in the message).</exception>
    /// <exception cref="TimeoutException">The provider was not ready within 60 seconds.</exception>
    public static async Task<OidcTestProvider> StartAsync(IReadOnlyList<OidcTestClient> clients, CancellationToken ct = default)
    {
        if (clients.Count == 0) throw new ArgumentException("the provider needs at least one client", nameof(clients));
        var node = FindOnPath("node");
        var npm = FindOnPath("npm");
        var folder = ProviderFolder();
        await EnsureDependenciesInstalledAsync(folder, npm, ct);

        var info = new ProcessStartInfo(node)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = folder,
        };
        // Port 0: the provider binds a free port itself and reports it, so no other listener can take it in between.
        foreach (var arg in new[] { "provider.mjs", "--port", "0" }) info.ArgumentList.Add(arg);
        foreach (var client in clients)
        {
            info.ArgumentList.Add("--client");
            info.ArgumentList.Add(JsonSerializer.Serialize(client, ClientMetadataJson));
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {node} provider.mjs");
        var log = new StringBuilder();
        var issuer = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) issuer.TrySetResult(null); // standard output closed: the process has ended
            else if (e.Data.StartsWith(ReadyPrefix, StringComparison.Ordinal)) issuer.TrySetResult(e.Data[ReadyPrefix.Length..].Trim());
            else Append(log, e.Data);
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null) Append(log, e.Data);
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        string? identifier;
        try
        {
            identifier = await issuer.Task.WaitAsync(StartTimeout, ct);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            await KillAsync(process);
            if (e is OperationCanceledException) throw;
            throw new TimeoutException($"the OIDC test provider was not ready within {StartTimeout.TotalSeconds} s:\n{Read(log)}");
        }
        if (identifier is null)
        {
            await process.WaitForExitAsync(CancellationToken.None); // and for the rest of its error output
            var exitCode = process.ExitCode;
            await KillAsync(process);
            throw new InvalidOperationException($"the OIDC test provider exited with {exitCode} before it was ready:\n{Read(log)}");
        }
        return new OidcTestProvider(process, log, identifier);
    }

    /// <summary>Kills the provider's process tree and waits until it has ended.</summary>
    public ValueTask DisposeAsync() => new(KillAsync(_process));

    private static async Task KillAsync(Process process)
    {
        if (!process.HasExited)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // It ended by itself between the check and the kill.
            }
            await process.WaitForExitAsync(CancellationToken.None);
        }
        process.Dispose();
    }

    private static void Append(StringBuilder log, string line)
    {
        lock (log) log.AppendLine(line);
    }

    private static string Read(StringBuilder log)
    {
        lock (log) return log.ToString();
    }

    private static string FindOnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(directory => Path.Combine(directory, program))
            .FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException(
            $"{program} is not on PATH: the OIDC test provider runs on Node.js and its dependencies are installed with npm; " +
            "./test.sh installs the Debian packages nodejs and npm");

    /// <summary><c>tests/oidc-provider</c> of this checkout, found above the test binaries.</summary>
    private static string ProviderFolder()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Cluster.sln"))) directory = directory.Parent;
        if (directory is null) throw new InvalidOperationException($"Cluster.sln not found above {AppContext.BaseDirectory}");
        return Path.Combine(directory.FullName, "tests", "oidc-provider");
    }

    /// <summary>
    /// Runs <c>npm ci</c> for the provider when its <c>node_modules</c> is missing. Within this process
    /// a semaphore, across test processes a file lock, let one install at a time; the install happens
    /// in a staging folder whose <c>node_modules</c> is then renamed into place, so that a provider
    /// never sees a half-installed one (not even after a test process died mid-install).
    /// </summary>
    private static async Task EnsureDependenciesInstalledAsync(string folder, string npm, CancellationToken ct)
    {
        if (Directory.Exists(Path.Combine(folder, "node_modules"))) return;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(InstallTimeout);
        try
        {
            await InstallAsync(folder, npm, deadline.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException($"installing the OIDC test provider's npm dependencies in {folder} took longer than {InstallTimeout}");
        }
    }

    private static async Task InstallAsync(string folder, string npm, CancellationToken ct)
    {
        var nodeModules = Path.Combine(folder, "node_modules");
        await InstallGate.WaitAsync(ct);
        try
        {
            if (Directory.Exists(nodeModules)) return; // installed by another test of this process meanwhile
            await using var fileLock = await LockFileAsync(Path.Combine(folder, ".install.lock"), ct);
            if (Directory.Exists(nodeModules)) return; // installed by another test process meanwhile

            var staging = Path.Combine(folder, ".install-staging");
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true); // left by an install that died
            Directory.CreateDirectory(staging);
            foreach (var file in new[] { "package.json", "package-lock.json" })
                File.Copy(Path.Combine(folder, file), Path.Combine(staging, file));
            await RunNpmCiAsync(npm, staging, ct);
            Directory.Move(Path.Combine(staging, "node_modules"), nodeModules);
            Directory.Delete(staging, recursive: true);
        }
        finally
        {
            InstallGate.Release();
        }
    }

    /// <summary>
    /// Takes an exclusive lock on <paramref name="path"/> (.NET locks a file opened with
    /// <see cref="FileShare.None"/> with flock on Linux; the lock ends with the process), polling while
    /// another process holds it.
    /// </summary>
    private static async Task<FileStream> LockFileAsync(string path, CancellationToken ct)
    {
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(250), ct);
            }
        }
    }

    private static async Task RunNpmCiAsync(string npm, string folder, CancellationToken ct)
    {
        var info = new ProcessStartInfo(npm)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = folder,
        };
        foreach (var arg in new[] { "ci", "--no-audit", "--no-fund" }) info.ArgumentList.Add(arg);
        info.Environment["npm_config_update_notifier"] = "false";
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {npm} ci");
        var output = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var error = process.StandardError.ReadToEndAsync(CancellationToken.None);
        try
        {
            await process.WaitForExitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(CancellationToken.None);
            throw;
        }
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"npm ci in {folder} exited with {process.ExitCode}:\n{await output}{await error}");
    }
}
