using System.CommandLine;
using System.Text.Json;
using Weft.Cluster.Hosting;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Cli;

/// <summary>
/// <c>weft</c>: with no subcommand it runs a coordinator node; the subcommands are admin tools that
/// talk to a running coordinator over its REST API.
/// </summary>
public static class WeftCommandLine
{
    public static RootCommand Build()
    {
        var root = new RootCommand("Weft coordinator. Run without a subcommand to start a node; use the subcommands to administer a running cluster.");
        AddServe(root);
        root.Add(TailnetCommands());
        root.Add(MemberCommands.Users());
        root.Add(MemberCommands.AuthKeys());
        root.Add(MemberCommands.Devices());
        root.Add(MemberCommands.ApiKeys());
        root.Add(PolicyCommands.Build());
        root.Add(MemberCommands.Audit());
        root.Add(HealthCommand());
        root.Add(OperatorKeyCommand());
        return root;
    }

    /// <summary><c>weft operator-key reset</c>: the recovery path when every operator key is lost (root, on a coordinator's machine).</summary>
    private static Command OperatorKeyCommand()
    {
        var operatorKey = new Command("operator-key", "Recover admin access when every operator key is lost");
        var reset = new Command("reset", "Make a new operator key, printed once; the coordinator on --data-dir installs it at its next start (root only)");
        var dataDir = new Option<string>("--data-dir") { Description = "The coordinator's data folder (default ./data)", DefaultValueFactory = _ => "./data" };
        reset.Add(dataDir);
        reset.SetAction(parse =>
        {
            var directory = parse.GetValue(dataDir)!;
            try
            {
                var token = OperatorKeyReset.Request(directory, Environment.IsPrivilegedProcess);
                Console.WriteLine("New operator key (shown only this once; store it now):");
                Console.WriteLine($"    {token}");
                Console.WriteLine($"It is installed when the coordinator on {Path.GetFullPath(directory)} starts next: restart it (e.g. systemctl restart weft).");
                Console.WriteLine("Then revoke the lost operator keys: weft apikey list; weft apikey revoke <id>.");
                return 0;
            }
            catch (Exception e) when (e is UnauthorizedAccessException or IOException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        operatorKey.Add(reset);
        return operatorKey;
    }

    private static void AddServe(RootCommand root)
    {
        var serve = new ServeOptions(root);
        root.SetAction(async (parse, cancel) =>
        {
            try
            {
                var app = CoordinatorHost.Build(serve.ToSettings(parse));
                await app.RunAsync(cancel);
                return Environment.ExitCode; // non-zero when the cluster stopped this node (see CoordinatorActorSystem)
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or FileNotFoundException)
            {
                // Start-up failures an operator can fix (port in use, bad settings): one clear line, no stack trace.
                Console.Error.WriteLine($"error: the coordinator could not start: {e.Message}");
                return 1;
            }
        });
    }

    private static Command HealthCommand()
    {
        var health = new Command("health", "Show the cluster members as seen by one coordinator");
        var client = new ClientOptions(health);
        health.SetAction(parse => client.Run(parse, async api =>
        {
            var report = await api.GetAsync("/healthz");
            if (client.Json(parse, report)) return;
            Console.Write(TextTable.Render(["ADDRESS", "STATUS", "REACHABLE", "ROLES"],
                report.GetProperty("members").EnumerateArray().Select(m => (IReadOnlyList<string>)
                [
                    m.GetProperty("address").GetString()!, m.GetProperty("status").GetString()!,
                    m.GetProperty("reachable").GetBoolean() ? "yes" : "no",
                    string.Join(",", m.GetProperty("roles").EnumerateArray().Select(r => r.GetString())),
                ])));
        }));
        return health;
    }

    private static Command TailnetCommands()
    {
        var tailnet = new Command("tailnet", "Create, list and change tailnets (tenants)");
        var client = new ClientOptions(tailnet);
        var expiry = new Option<int?>("--node-key-expiry-days") { Description = "Node-key lifetime in days (1-180)" };
        var dnsSuffix = new Option<string?>("--dns-suffix") { Description = "MagicDNS suffix, e.g. acme.example.net" };
        var ephemeralTimeout = new Option<int?>("--ephemeral-timeout-seconds") { Description = "How long an ephemeral device may stay disconnected before it is removed" };
        var keyless = new Option<bool?>("--keyless-registration") { Description = "true: devices may register without an auth key and wait for an admin's approval (default false)" };
        Argument<string> Which() => new("tailnet") { Description = "Tailnet id (tn_...) or name" };

        var create = new Command("create", "Create a tailnet");
        var name = new Argument<string>("name") { Description = "Unique name: a-z, 0-9 and '-'" };
        create.Add(name); create.Add(expiry); create.Add(dnsSuffix); create.Add(ephemeralTimeout); create.Add(keyless);
        create.SetAction(parse => client.Run(parse, async api => client.PrintTailnet(parse,
            await api.PostAsync("/api/v1/tailnets", new CreateTailnetRequest(parse.GetValue(name)!, parse.GetValue(expiry), parse.GetValue(dnsSuffix), parse.GetValue(ephemeralTimeout), parse.GetValue(keyless))))));

        var list = new Command("list", "List tailnets");
        list.SetAction(parse => client.Run(parse, async api =>
        {
            var listing = await api.GetAsync("/api/v1/tailnets");
            if (client.Json(parse, listing)) return;
            Console.Write(TextTable.Render(["ID", "NAME", "CREATED"],
                listing.GetProperty("tailnets").EnumerateArray().Select(t => (IReadOnlyList<string>)
                    [t.GetProperty("id").GetString()!, t.GetProperty("name").GetString()!, Format.Time(t.GetProperty("createdAt"))])));
        }));

        var get = new Command("get", "Show one tailnet");
        var getWhich = Which();
        get.Add(getWhich);
        get.SetAction(parse => client.Run(parse, async api =>
            client.PrintTailnet(parse, await api.GetAsync($"/api/v1/tailnets/{Uri.EscapeDataString(parse.GetValue(getWhich)!)}"))));

        var set = new Command("set", "Change a tailnet's settings");
        var setWhich = Which();
        set.Add(setWhich); set.Add(expiry); set.Add(dnsSuffix); set.Add(ephemeralTimeout); set.Add(keyless);
        set.SetAction(parse => client.Run(parse, async api => client.PrintTailnet(parse,
            await api.PatchAsync($"/api/v1/tailnets/{Uri.EscapeDataString(parse.GetValue(setWhich)!)}",
                new UpdateTailnetSettingsRequest(parse.GetValue(expiry), parse.GetValue(dnsSuffix), parse.GetValue(ephemeralTimeout), parse.GetValue(keyless))))));

        var rename = new Command("rename", "Give a tailnet a new name");
        var renameWhich = Which();
        var newName = new Argument<string>("new-name");
        rename.Add(renameWhich); rename.Add(newName);
        rename.SetAction(parse => client.Run(parse, async api => client.PrintTailnet(parse,
            await api.PostAsync($"/api/v1/tailnets/{Uri.EscapeDataString(parse.GetValue(renameWhich)!)}/rename",
                new RenameTailnetRequest(parse.GetValue(newName)!)))));

        var delete = new Command("delete", "Delete a tailnet and everything in it");
        var deleteWhich = Which();
        delete.Add(deleteWhich);
        delete.SetAction(parse => client.Run(parse, async api =>
        {
            var which = parse.GetValue(deleteWhich)!;
            await api.DeleteAsync($"/api/v1/tailnets/{Uri.EscapeDataString(which)}");
            if (!client.Json(parse, JsonDocument.Parse($$"""{"deleted":{{JsonSerializer.Serialize(which)}}}""").RootElement))
                Console.WriteLine($"deleted tailnet {which}");
        }));

        foreach (var command in new[] { create, list, get, set, rename, delete, SsoCommands(client, Which) }) tailnet.Add(command);
        return tailnet;
    }

    /// <summary>The environment variable <c>weft tailnet sso set</c> reads the client secret from (a flag would leave it in the shell's history).</summary>
    public const string ClientSecretVariable = "WEFT_OIDC_CLIENT_SECRET";

    private static Command SsoCommands(ClientOptions client, Func<Argument<string>> which)
    {
        var sso = new Command("sso", "The tailnet's OpenID Connect provider: how its people sign in");
        static string PathOf(ParseResult parse, Argument<string> tailnet) => $"/api/v1/tailnets/{Uri.EscapeDataString(parse.GetValue(tailnet)!)}/sso";

        var set = new Command("set", $"Set (or replace) the tailnet's provider; the client secret comes from ${ClientSecretVariable} or --client-secret-file");
        var setWhich = which();
        var issuer = new Option<string>("--issuer") { Description = "The provider's issuer URL (https), e.g. https://accounts.google.com", Required = true };
        var clientId = new Option<string>("--client-id") { Description = "The client id Weft has at the provider", Required = true };
        var secretFile = new Option<FileInfo?>("--client-secret-file") { Description = $"A file holding the client secret (else ${ClientSecretVariable})" };
        var domains = new Option<string[]>("--allowed-domain") { Description = "An email domain whose users may sign in (repeat; none: any)" };
        var groups = new Option<string[]>("--allowed-group") { Description = "A group whose members may sign in (repeat; none: any)" };
        var groupsClaim = new Option<string?>("--groups-claim") { Description = $"The ID token claim that lists the user's groups (default {Tailnets.SsoSettings.DefaultGroupsClaim})" };
        var scopes = new Option<string[]>("--scope") { Description = $"A scope to ask for (repeat; default {string.Join(" ", Tailnets.SsoSettings.DefaultScopes)})" };
        set.Add(setWhich); set.Add(issuer); set.Add(clientId); set.Add(secretFile); set.Add(domains); set.Add(groups); set.Add(groupsClaim); set.Add(scopes);
        set.SetAction(parse => client.Run(parse, async api =>
        {
            var secret = parse.GetValue(secretFile) is { } file ? File.ReadAllText(file.FullName).Trim() : Environment.GetEnvironmentVariable(ClientSecretVariable);
            if (string.IsNullOrEmpty(secret))
                throw new AdminApiError(0, ApiErrorCodes.InvalidRequest, $"the client secret is missing: set ${ClientSecretVariable} or give --client-secret-file");
            var request = new SetSsoRequest(parse.GetValue(issuer)!, parse.GetValue(clientId)!, secret, parse.GetValue(domains), parse.GetValue(groups),
                parse.GetValue(groupsClaim), parse.GetValue(scopes) is { Length: > 0 } asked ? asked : null);
            PrintSso(client, parse, await api.PutAsync(PathOf(parse, setWhich), request));
        }));

        var show = new Command("show", "Show the tailnet's provider (never its secret)");
        var showWhich = which();
        show.Add(showWhich);
        show.SetAction(parse => client.Run(parse, async api => PrintSso(client, parse, await api.GetAsync(PathOf(parse, showWhich)))));

        var clear = new Command("clear", "Remove the tailnet's provider");
        var clearWhich = which();
        clear.Add(clearWhich);
        clear.SetAction(parse => client.Run(parse, async api =>
        {
            await api.DeleteAsync(PathOf(parse, clearWhich));
            if (!client.Json(parse, JsonDocument.Parse("""{"removed":true}""").RootElement))
                Console.WriteLine($"removed the identity provider of tailnet {parse.GetValue(clearWhich)}");
        }));

        foreach (var command in new[] { set, show, clear }) sso.Add(command);
        return sso;
    }

    private static void PrintSso(ClientOptions client, ParseResult parse, JsonElement sso)
    {
        if (client.Json(parse, sso)) return;
        static string List(JsonElement e, string name) =>
            e.GetProperty(name).GetArrayLength() == 0 ? "(any)" : string.Join(", ", e.GetProperty(name).EnumerateArray().Select(v => v.GetString()));
        Console.WriteLine($"issuer:          {sso.GetProperty("issuer").GetString()}");
        Console.WriteLine($"client id:       {sso.GetProperty("clientId").GetString()}   (secret stored, never shown)");
        Console.WriteLine($"allowed domains: {List(sso, "allowedDomains")}");
        Console.WriteLine($"allowed groups:  {List(sso, "allowedGroups")}");
        Console.WriteLine($"groups claim:    {sso.GetProperty("groupsClaim").GetString()}");
        Console.WriteLine($"scopes:          {string.Join(" ", sso.GetProperty("scopes").EnumerateArray().Select(v => v.GetString()))}");
        if (sso.TryGetProperty("redirectUri", out var redirect))
            Console.WriteLine($"redirect URI:    {redirect.GetString()}   (register it at the provider)");
    }
}
