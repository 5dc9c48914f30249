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
        root.Add(HealthCommand());
        return root;
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
                return 0;
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
        Argument<string> Which() => new("tailnet") { Description = "Tailnet id (tn_...) or name" };

        var create = new Command("create", "Create a tailnet");
        var name = new Argument<string>("name") { Description = "Unique name: a-z, 0-9 and '-'" };
        create.Add(name); create.Add(expiry); create.Add(dnsSuffix);
        create.SetAction(parse => client.Run(parse, async api => client.PrintTailnet(parse,
            await api.PostAsync("/api/v1/tailnets", new CreateTailnetRequest(parse.GetValue(name)!, parse.GetValue(expiry), parse.GetValue(dnsSuffix))))));

        var list = new Command("list", "List tailnets");
        list.SetAction(parse => client.Run(parse, async api =>
        {
            var listing = await api.GetAsync("/api/v1/tailnets");
            if (client.Json(parse, listing)) return;
            Console.Write(TextTable.Render(["ID", "NAME", "CREATED"],
                listing.GetProperty("tailnets").EnumerateArray().Select(t => (IReadOnlyList<string>)
                    [t.GetProperty("id").GetString()!, t.GetProperty("name").GetString()!, FormatTime(t.GetProperty("createdAt"))])));
        }));

        var get = new Command("get", "Show one tailnet");
        var getWhich = Which();
        get.Add(getWhich);
        get.SetAction(parse => client.Run(parse, async api =>
            client.PrintTailnet(parse, await api.GetAsync($"/api/v1/tailnets/{Uri.EscapeDataString(parse.GetValue(getWhich)!)}"))));

        var set = new Command("set", "Change a tailnet's settings");
        var setWhich = Which();
        set.Add(setWhich); set.Add(expiry); set.Add(dnsSuffix);
        set.SetAction(parse => client.Run(parse, async api => client.PrintTailnet(parse,
            await api.PatchAsync($"/api/v1/tailnets/{Uri.EscapeDataString(parse.GetValue(setWhich)!)}",
                new UpdateTailnetSettingsRequest(parse.GetValue(expiry), parse.GetValue(dnsSuffix))))));

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

        foreach (var command in new[] { create, list, get, set, rename, delete }) tailnet.Add(command);
        return tailnet;
    }

    private static string FormatTime(JsonElement value) =>
        value.GetDateTimeOffset().ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss'Z'");

    /// <summary>The options every admin subcommand shares, and how it reports failures.</summary>
    private sealed class ClientOptions
    {
        private readonly Option<string> _server = new("--server")
        {
            Description = "Coordinator admin API (env WEFT_SERVER)",
            Recursive = true,
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("WEFT_SERVER") ?? "http://127.0.0.1:8080",
        };
        private readonly Option<string?> _apiKey = new("--api-key")
        {
            Description = "API key (env WEFT_API_KEY)",
            Recursive = true,
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("WEFT_API_KEY"),
        };
        private readonly Option<bool> _json = new("--json") { Description = "Print the API's JSON instead of a table", Recursive = true };

        public ClientOptions(Command command)
        {
            command.Add(_server);
            command.Add(_apiKey);
            command.Add(_json);
        }

        public async Task<int> Run(ParseResult parse, Func<AdminApiClient, Task> work)
        {
            var server = parse.GetValue(_server)!;
            if (!Uri.TryCreate(server, UriKind.Absolute, out var uri))
            {
                Console.Error.WriteLine($"error: --server '{server}' is not an absolute URL");
                return 2;
            }
            using var api = new AdminApiClient(uri, parse.GetValue(_apiKey));
            try
            {
                await work(api);
                return 0;
            }
            catch (AdminApiError e)
            {
                Console.Error.WriteLine($"error: {e.Message} ({e.Code})");
                return 1;
            }
            catch (HttpRequestException e)
            {
                Console.Error.WriteLine($"error: cannot reach the coordinator at {uri}: {e.Message}");
                return 2;
            }
        }

        public bool Json(ParseResult parse, JsonElement body)
        {
            if (!parse.GetValue(_json)) return false;
            Console.WriteLine(JsonSerializer.Serialize(body, new JsonSerializerOptions { WriteIndented = true }));
            return true;
        }

        public void PrintTailnet(ParseResult parse, JsonElement tailnet)
        {
            if (Json(parse, tailnet)) return;
            var settings = tailnet.GetProperty("settings");
            Console.Write(TextTable.RenderFields(
            [
                ("id", tailnet.GetProperty("id").GetString()!),
                ("name", tailnet.GetProperty("name").GetString()!),
                ("created", FormatTime(tailnet.GetProperty("createdAt"))),
                ("node key expiry", $"{settings.GetProperty("nodeKeyExpiryDays").GetInt32()} days"),
                ("dns suffix", settings.GetProperty("dnsSuffix").GetString()!),
            ]));
        }
    }
}
