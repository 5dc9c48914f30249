using System.CommandLine;
using System.Text.Json;

namespace Weft.Cluster.Cli;

/// <summary>
/// <c>weft user|authkey|device|apikey …</c>: what lives inside a tailnet, over the admin API. Each
/// command prints a table, or the API's JSON with <c>--json</c>.
/// </summary>
public static class MemberCommands
{
    private static Option<string> TailnetOption() => new("--tailnet", "-t")
    {
        Description = "Tailnet id or name (env WEFT_TAILNET)",
        Recursive = true,
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("WEFT_TAILNET") ?? "",
    };

    private static string Base(ParseResult parse, Option<string> tailnet)
    {
        var value = parse.GetValue(tailnet);
        if (string.IsNullOrEmpty(value)) throw new AdminApiError(0, "invalid_request", "give --tailnet (or set WEFT_TAILNET)");
        return $"/api/v1/tailnets/{Uri.EscapeDataString(value)}";
    }

    private static string Escaped(ParseResult parse, Argument<string> argument) => Uri.EscapeDataString(parse.GetValue(argument)!);

    private static void Done(ClientOptions client, ParseResult parse, string what, string id)
    {
        if (!client.Json(parse, JsonSerializer.SerializeToElement(new Dictionary<string, string> { [what] = id })))
            Console.WriteLine($"{what} {id}");
    }

    // ------------------------------------------------------------------ users

    public static Command Users()
    {
        var users = new Command("user", "Users of a tailnet (the owners of untagged devices)");
        var client = new ClientOptions(users);
        var tailnet = TailnetOption();
        users.Add(tailnet);

        var list = new Command("list", "List users");
        list.SetAction(parse => client.Run(parse, async api =>
        {
            var body = await api.GetAsync(Base(parse, tailnet) + "/users");
            if (client.Json(parse, body)) return;
            Console.Write(TextTable.Render(["ID", "NAME", "ROLE", "SIGNS IN AT", "GROUPS", "CREATED"], body.GetProperty("users").EnumerateArray().Select(u => (IReadOnlyList<string>)
                [Format.Text(u, "id"), Format.Text(u, "name"), Format.Text(u, "role"), u.TryGetProperty("issuer", out _) ? Format.Text(u, "issuer") : "-",
                 u.TryGetProperty("groups", out _) ? Format.List(u, "groups") : "-", Format.Time(u.GetProperty("createdAt"))])));
        }));

        var create = new Command("create", "Add a user (one who signs in at the tailnet's identity provider with this email becomes this user)");
        var name = new Argument<string>("name") { Description = "For example alice@example.com" };
        var createRole = new Option<string?>("--role") { Description = "owner, admin, member (the default) or auditor" };
        create.Add(name);
        create.Add(createRole);
        create.SetAction(parse => client.Run(parse, async api =>
        {
            var user = await api.PostAsync(Base(parse, tailnet) + "/users", new { name = parse.GetValue(name), role = parse.GetValue(createRole) });
            if (!client.Json(parse, user)) Console.WriteLine($"created user {Format.Text(user, "name")} ({Format.Text(user, "id")}), {Format.Text(user, "role")}");
        }));

        var role = new Command("role", "Give a user a role: owner, admin (administer the tailnet), auditor (read it) or member (no admin access)");
        var roleUser = new Argument<string>("user") { Description = "User id or name" };
        var roleName = new Argument<string>("role") { Description = "owner, admin, member or auditor" };
        role.Add(roleUser);
        role.Add(roleName);
        role.SetAction(parse => client.Run(parse, async api =>
        {
            var user = await api.PutAsync($"{Base(parse, tailnet)}/users/{Escaped(parse, roleUser)}/role", new { role = parse.GetValue(roleName) });
            if (!client.Json(parse, user)) Console.WriteLine($"{Format.Text(user, "name")} is now {Format.Text(user, "role")}");
        }));

        var delete = new Command("delete", "Remove a user (its auth keys are revoked; it must own no devices)");
        var which = new Argument<string>("user") { Description = "User id or name" };
        delete.Add(which);
        delete.SetAction(parse => client.Run(parse, async api =>
        {
            await api.DeleteAsync($"{Base(parse, tailnet)}/users/{Escaped(parse, which)}");
            Done(client, parse, "deleted", parse.GetValue(which)!);
        }));

        foreach (var command in new[] { list, create, role, delete }) users.Add(command);
        return users;
    }

    // ------------------------------------------------------------------ auth keys

    public static Command AuthKeys()
    {
        var keys = new Command("authkey", "Pre-authorisation keys with which devices join a tailnet");
        var client = new ClientOptions(keys);
        var tailnet = TailnetOption();
        keys.Add(tailnet);

        var list = new Command("list", "List auth keys (never their secrets)");
        list.SetAction(parse => client.Run(parse, async api =>
        {
            var body = await api.GetAsync(Base(parse, tailnet) + "/auth-keys");
            if (client.Json(parse, body)) return;
            Console.Write(TextTable.Render(["ID", "REUSABLE", "EPHEMERAL", "TAGS", "USER", "USES", "EXPIRES", "STATE"],
                body.GetProperty("authKeys").EnumerateArray().Select(k => (IReadOnlyList<string>)
                [
                    Format.Text(k, "id"), YesNo(k, "reusable"), YesNo(k, "ephemeral"), Format.List(k, "tags"), Format.Text(k, "user"),
                    Format.Text(k, "uses"), Format.Time(k.GetProperty("expiresAt")),
                    k.GetProperty("revoked").GetBoolean() ? "revoked" : k.GetProperty("expired").GetBoolean() ? "expired" : "valid",
                ])));
        }));

        var create = new Command("create", "Create an auth key; its secret is printed once");
        var reusable = new Option<bool>("--reusable") { Description = "Any number of devices may join with it (default: one)" };
        var ephemeral = new Option<bool>("--ephemeral") { Description = "Devices are removed after they disconnect" };
        var tags = new Option<string[]>("--tag") { Description = "Tag for the devices (tag:name; repeatable); tagged devices do not expire", AllowMultipleArgumentsPerToken = true };
        var expiry = new Option<int?>("--expiry-seconds") { Description = "Lifetime of the key (default 90 days)" };
        var user = new Option<string?>("--user") { Description = "User who owns the devices (untagged keys)" };
        var description = new Option<string?>("--description");
        foreach (var option in new Option[] { reusable, ephemeral, tags, expiry, user, description }) create.Add(option);
        create.SetAction(parse => client.Run(parse, async api =>
        {
            var body = new Dictionary<string, object?>
            {
                ["reusable"] = parse.GetValue(reusable), ["ephemeral"] = parse.GetValue(ephemeral), ["tags"] = parse.GetValue(tags) ?? [],
                ["expirySeconds"] = parse.GetValue(expiry), ["user"] = parse.GetValue(user), ["description"] = parse.GetValue(description),
            };
            var created = await api.PostAsync(Base(parse, tailnet) + "/auth-keys", body);
            if (client.Json(parse, created)) return;
            Console.WriteLine($"auth key {Format.Text(created.GetProperty("authKey"), "id")} (shown only this once):");
            Console.WriteLine($"    {Format.Text(created, "key")}");
        }));

        var revoke = new Command("revoke", "Revoke an auth key (devices that joined with it stay)");
        var which = new Argument<string>("key") { Description = "Auth key id" };
        revoke.Add(which);
        revoke.SetAction(parse => client.Run(parse, async api =>
        {
            await api.DeleteAsync($"{Base(parse, tailnet)}/auth-keys/{Escaped(parse, which)}");
            Done(client, parse, "revoked", parse.GetValue(which)!);
        }));

        foreach (var command in new[] { list, create, revoke }) keys.Add(command);
        return keys;
    }

    private static string YesNo(JsonElement parent, string property) => parent.GetProperty(property).GetBoolean() ? "yes" : "no";

    // ------------------------------------------------------------------ devices

    public static Command Devices()
    {
        var devices = new Command("device", "Devices of a tailnet");
        var client = new ClientOptions(devices);
        var tailnet = TailnetOption();
        devices.Add(tailnet);
        Argument<string> Which() => new("device") { Description = "Device id (dev_...) or name" };

        var list = new Command("list", "List devices");
        list.SetAction(parse => client.Run(parse, async api =>
        {
            var body = await api.GetAsync(Base(parse, tailnet) + "/devices");
            if (client.Json(parse, body)) return;
            Console.Write(TextTable.Render(["ID", "NAME", "ADDRESSES", "STATUS", "ONLINE", "USER", "TAGS", "KEY EXPIRY"],
                body.GetProperty("devices").EnumerateArray().Select(d => (IReadOnlyList<string>)
                [
                    Format.Text(d, "id"), Format.Text(d, "name"), Format.List(d, "addresses"), Format.Text(d, "status"), YesNo(d, "online"),
                    Format.Text(d, "user"), Format.List(d, "tags"), d.TryGetProperty("keyExpiry", out var e) ? Format.Time(e) : "never",
                ])));
        }));

        Command OnDevice(string name, string description, Func<ParseResult, Argument<string>, AdminApiClient, Task<JsonElement>> call, params Symbol[] extra)
        {
            var command = new Command(name, description);
            var which = Which();
            command.Add(which);
            foreach (var symbol in extra)
            {
                if (symbol is Option option) command.Add(option);
                else if (symbol is Argument argument) command.Add(argument);
            }
            command.SetAction(parse => client.Run(parse, async api => PrintDevice(client, parse, await call(parse, which, api))));
            return command;
        }

        var show = OnDevice("show", "Show one device", (parse, which, api) => api.GetAsync($"{Base(parse, tailnet)}/devices/{Escaped(parse, which)}"));
        var approve = OnDevice("approve", "Approve a device that is waiting (registered without an auth key; compare its machine key and address with the agent's)",
            (parse, which, api) => api.PostAsync($"{Base(parse, tailnet)}/devices/{Escaped(parse, which)}/approve", new { }));
        var newName = new Argument<string>("new-name");
        var rename = OnDevice("rename", "Give a device a new MagicDNS name",
            (parse, which, api) => api.PostAsync($"{Base(parse, tailnet)}/devices/{Escaped(parse, which)}/rename", new { name = parse.GetValue(newName) }), newName);
        var tagList = new Argument<string[]>("tags") { Description = "tag:name ... (none: remove every tag)", Arity = ArgumentArity.ZeroOrMore };
        var tags = OnDevice("tags", "Set a device's tags",
            (parse, which, api) => api.PostAsync($"{Base(parse, tailnet)}/devices/{Escaped(parse, which)}/tags", new { tags = parse.GetValue(tagList) ?? [] }), tagList);
        var expire = OnDevice("expire", "Expire a device's node key now: it leaves its peers' netmaps until re-authorised",
            (parse, which, api) => api.PostAsync($"{Base(parse, tailnet)}/devices/{Escaped(parse, which)}/expire", new { }));

        var delete = new Command("delete", "Delete a device: its peers drop it at once");
        var deleteWhich = Which();
        delete.Add(deleteWhich);
        delete.SetAction(parse => client.Run(parse, async api =>
        {
            await api.DeleteAsync($"{Base(parse, tailnet)}/devices/{Escaped(parse, deleteWhich)}");
            Done(client, parse, "deleted", parse.GetValue(deleteWhich)!);
        }));

        var deletePending = new Command("delete-pending", "Delete every device waiting for approval (unwanted registrations without an auth key)");
        deletePending.SetAction(parse => client.Run(parse, async api =>
        {
            var body = await api.DeleteAsync($"{Base(parse, tailnet)}/devices?status=pending");
            if (client.Json(parse, body)) return;
            var deleted = body.GetProperty("deleted").EnumerateArray().Select(d => d.GetString()!).ToList();
            Console.WriteLine(deleted.Count == 0 ? "no device was waiting for approval" : $"deleted {deleted.Count} waiting device(s): {string.Join(", ", deleted)}");
        }));

        var netmap = new Command("netmap", "The netmap the device would receive now (JSON, for debugging)");
        var netmapWhich = Which();
        netmap.Add(netmapWhich);
        netmap.SetAction(parse => client.Run(parse, async api =>
            Console.WriteLine(JsonSerializer.Serialize(await api.GetAsync($"{Base(parse, tailnet)}/devices/{Escaped(parse, netmapWhich)}/netmap"),
                new JsonSerializerOptions { WriteIndented = true }))));

        foreach (var command in new[] { list, show, approve, rename, tags, expire, delete, deletePending, netmap, RoutesCommand(client, tailnet, Which) }) devices.Add(command);
        return devices;
    }

    /// <summary><c>weft device routes show|approve|revoke</c>: a subnet router's and an exit node's routes.</summary>
    private static Command RoutesCommand(ClientOptions client, Option<string> tailnet, Func<Argument<string>> which)
    {
        var routes = new Command("routes", "A device's routes: what its agent advertises (--advertise-routes, --advertise-exit-node) and what is approved");

        var show = new Command("show", "Show the routes a device advertises, the approved ones and those in force");
        var showWhich = which();
        show.Add(showWhich);
        show.SetAction(parse => client.Run(parse, async api =>
            PrintRoutes(client, parse, await api.GetAsync($"{Base(parse, tailnet)}/devices/{Escaped(parse, showWhich)}/routes"))));

        Command Change(string name, string description, bool approve)
        {
            var command = new Command(name, description);
            var device = which();
            var prefixes = new Argument<string[]>("routes") { Description = "CIDR prefixes, for example 198.51.100.0/24", Arity = ArgumentArity.ZeroOrMore };
            var exitNode = new Option<bool>("--exit-node") { Description = "the exit routes (0.0.0.0/0 and ::/0)" };
            command.Add(device);
            command.Add(prefixes);
            command.Add(exitNode);
            command.SetAction(parse => client.Run(parse, async api =>
            {
                var named = (parse.GetValue(prefixes) ?? []).Concat(parse.GetValue(exitNode) ? Weft.Contracts.Control.ExitRoute.Prefixes : []).ToList();
                if (named.Count == 0) throw new ArgumentException("name the routes (CIDR prefixes) or give --exit-node");
                var path = $"{Base(parse, tailnet)}/devices/{Escaped(parse, device)}/routes";
                var current = (await api.GetAsync(path)).GetProperty("approved").EnumerateArray().Select(r => r.GetString()!).ToList();
                var wanted = approve ? current.Union(named) : current.Except(named);
                PrintRoutes(client, parse, await api.PostAsync(path, new { routes = wanted.ToArray() }));
            }));
            return command;
        }

        routes.Add(show);
        routes.Add(Change("approve", "Approve advertised routes (they go into the peers' AllowedIPs and route tables)", approve: true));
        routes.Add(Change("revoke", "Withdraw approval of routes (every peer stops routing them through this device)", approve: false));
        return routes;
    }

    private static void PrintRoutes(ClientOptions client, ParseResult parse, JsonElement routes)
    {
        if (client.Json(parse, routes)) return;
        Console.Write(TextTable.RenderFields(
        [
            ("advertised", Format.List(routes, "advertised")),
            ("approved", Format.List(routes, "approved")),
            ("in force", Format.List(routes, "enabled")),
            ("exit node", YesNo(routes, "exitNode")),
        ]));
    }

    private static void PrintDevice(ClientOptions client, ParseResult parse, JsonElement device)
    {
        if (client.Json(parse, device)) return;
        Console.Write(TextTable.RenderFields(
        [
            ("id", Format.Text(device, "id")),
            ("name", Format.Text(device, "name")),
            ("hostname", Format.Text(device, "hostname")),
            ("os", Format.Text(device, "os")),
            ("agent", Format.Text(device, "agentVersion")),
            ("status", Format.Text(device, "status")),
            ("online", YesNo(device, "online")),
            ("addresses", Format.List(device, "addresses")),
            ("endpoints", Format.List(device, "endpoints")),
            ("user", Format.Text(device, "user")),
            ("tags", Format.List(device, "tags")),
            ("routes", device.TryGetProperty("routes", out var routes) && routes.ValueKind == JsonValueKind.Object ? Format.List(routes, "enabled") : "-"),
            ("node key", Format.Text(device, "nodeKey")),
            ("machine key", Format.Text(device, "machineKey")),
            ("registered from", device.TryGetProperty("registeredFrom", out var from) && from.GetString() is { Length: > 0 } address ? Format.Printable(address) : "-"),
            ("key expiry", device.TryGetProperty("keyExpiry", out var expiry) ? Format.Time(expiry) : "never"),
            ("last seen", device.TryGetProperty("lastSeen", out var seen) ? Format.Time(seen) : "-"),
            ("ephemeral", YesNo(device, "ephemeral")),
        ]));
    }

    // ------------------------------------------------------------------ audit log

    public static Command Audit()
    {
        var audit = new Command("audit", "Admin changes: who changed what, when and from where (a tailnet's, or with no --tailnet the cluster's own)");
        var client = new ClientOptions(audit);
        var tailnet = TailnetOption();
        var since = new Option<string>("--since") { Description = "How far back: 90s, 15m, 1h, 7d, or a timestamp (default 1d)", DefaultValueFactory = _ => "1d" };
        var limit = new Option<int>("--limit") { Description = "At most this many entries, the newest (1-1000)", DefaultValueFactory = _ => 100 };
        audit.Add(tailnet);
        audit.Add(since);
        audit.Add(limit);
        audit.SetAction(parse => client.Run(parse, async api =>
        {
            var which = parse.GetValue(tailnet);
            var path = string.IsNullOrEmpty(which) ? "/api/v1/audit" : $"/api/v1/tailnets/{Uri.EscapeDataString(which)}/audit";
            var body = await api.GetAsync($"{path}?since={Uri.EscapeDataString(parse.GetValue(since)!)}&limit={parse.GetValue(limit)}");
            if (client.Json(parse, body)) return;
            Console.Write(TextTable.Render(["WHEN", "WHO", "WHAT", "TARGET", "STATUS", "FROM"],
                body.GetProperty("entries").EnumerateArray().Select(e => (IReadOnlyList<string>)
                [
                    Format.Time(e.GetProperty("at")), Format.Text(e, "actor"), Format.Text(e, "action"), Format.Text(e, "target"),
                    e.GetProperty("status").GetInt32().ToString(System.Globalization.CultureInfo.InvariantCulture), Format.Text(e, "source"),
                ])));
            if (body.GetProperty("truncated").GetBoolean()) Console.WriteLine("(older entries match too: raise --limit or narrow --since)");
        }));
        return audit;
    }

    // ------------------------------------------------------------------ API keys

    public static Command ApiKeys()
    {
        var keys = new Command("apikey", "Admin API keys: operator keys (whole cluster) or tailnet keys (one tenant)");
        var client = new ClientOptions(keys);

        var list = new Command("list", "List API keys (never their secrets)");
        list.SetAction(parse => client.Run(parse, async api =>
        {
            var body = await api.GetAsync("/api/v1/api-keys");
            if (client.Json(parse, body)) return;
            Console.Write(TextTable.Render(["ID", "SCOPE", "TAILNET", "DESCRIPTION", "CREATED"], body.GetProperty("apiKeys").EnumerateArray().Select(k => (IReadOnlyList<string>)
                [Format.Text(k, "id"), Format.Text(k, "scope"), Format.Text(k, "tailnet"), Format.Text(k, "description"), Format.Time(k.GetProperty("createdAt"))])));
        }));

        var create = new Command("create", "Issue an API key; it is printed once");
        var tailnet = new Option<string?>("--tailnet", "-t") { Description = "Issue a tenant key for this tailnet (id or name)" };
        var operatorScope = new Option<bool>("--operator") { Description = "Issue an operator key (whole cluster)" };
        var description = new Option<string?>("--description");
        create.Add(tailnet); create.Add(operatorScope); create.Add(description);
        create.SetAction(parse => client.Run(parse, async api =>
        {
            if (parse.GetValue(operatorScope) == (parse.GetValue(tailnet) is not null))
                throw new AdminApiError(0, "invalid_request", "give exactly one of --operator or --tailnet");
            var created = await api.PostAsync("/api/v1/api-keys", new Dictionary<string, string?>
            {
                ["scope"] = parse.GetValue(operatorScope) ? "operator" : "tailnet",
                ["tailnet"] = parse.GetValue(tailnet),
                ["description"] = parse.GetValue(description),
            });
            if (client.Json(parse, created)) return;
            Console.WriteLine($"API key {Format.Text(created.GetProperty("apiKey"), "id")} (shown only this once):");
            Console.WriteLine($"    {Format.Text(created, "key")}");
        }));

        var revoke = new Command("revoke", "Revoke an API key");
        var which = new Argument<string>("key") { Description = "API key id" };
        revoke.Add(which);
        revoke.SetAction(parse => client.Run(parse, async api =>
        {
            await api.DeleteAsync($"/api/v1/api-keys/{Escaped(parse, which)}");
            Done(client, parse, "revoked", parse.GetValue(which)!);
        }));

        foreach (var command in new[] { list, create, revoke }) keys.Add(command);
        return keys;
    }
}

/// <summary><c>weft policy get|set|validate|test</c>: the tailnet's access policy (Tailscale's HuJSON format).</summary>
public static class PolicyCommands
{
    public static Command Build()
    {
        var policy = new Command("policy", "A tailnet's access policy: acls, groups, tagOwners, hosts and tests, as in Tailscale");
        var client = new ClientOptions(policy);
        var tailnet = new Option<string>("--tailnet", "-t")
        {
            Description = "Tailnet id or name (env WEFT_TAILNET)",
            Recursive = true,
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("WEFT_TAILNET") ?? "",
        };
        policy.Add(tailnet);
        string Base(ParseResult parse) => string.IsNullOrEmpty(parse.GetValue(tailnet))
            ? throw new AdminApiError(0, "invalid_request", "give --tailnet (or set WEFT_TAILNET)")
            : $"/api/v1/tailnets/{Uri.EscapeDataString(parse.GetValue(tailnet)!)}/policy";
        Argument<FileInfo> File() => new("file") { Description = "The policy file (HuJSON); - reads standard input" };
        static string Read(FileInfo file) => file.Name == "-" ? Console.In.ReadToEnd() : System.IO.File.ReadAllText(file.FullName);

        var get = new Command("get", "Print the policy in force");
        get.SetAction(parse => client.Run(parse, async api => Console.Write(await api.GetTextAsync(Base(parse)))));

        var set = new Command("set", "Validate, test and apply a policy; a refused policy leaves the old one in force");
        var setFile = File();
        set.Add(setFile);
        set.SetAction(parse => client.Run(parse, async api =>
        {
            var answer = await api.PostTextAsync(Base(parse), Read(parse.GetValue(setFile)!), "application/hujson");
            if (!client.Json(parse, answer)) Console.WriteLine($"policy applied: version {answer.GetProperty("version").GetInt32()}");
        }));

        var validate = new Command("validate", "Check a policy (names, syntax, its tests) without applying it");
        var validateFile = File();
        validate.Add(validateFile);
        validate.SetAction(parse => client.Run(parse, async api =>
        {
            var answer = await api.PostTextAsync(Base(parse) + "/validate", Read(parse.GetValue(validateFile)!), "application/hujson");
            if (!client.Json(parse, answer))
                Console.WriteLine($"valid: {answer.GetProperty("rules").GetInt32()} rule(s), {answer.GetProperty("tests").GetInt32()} test(s) passed");
        }));

        var test = new Command("test", "May a source reach a destination under the policy in force?");
        var src = new Option<string>("--src") { Description = "User, group:, tag:, host or IP", Required = true };
        var dst = new Option<string>("--dst") { Description = "target:port, e.g. tag:web:443", Required = true };
        var proto = new Option<string?>("--proto") { Description = "tcp (default), udp, icmp, ..." };
        test.Add(src); test.Add(dst); test.Add(proto);
        test.SetAction(parse => client.Run(parse, async api =>
        {
            var answer = await api.PostAsync(Base(parse) + "/test", new Dictionary<string, string?>
            {
                ["src"] = parse.GetValue(src), ["dst"] = parse.GetValue(dst), ["proto"] = parse.GetValue(proto),
            });
            if (!client.Json(parse, answer))
                Console.WriteLine($"{(answer.GetProperty("allowed").GetBoolean() ? "allowed" : "denied")}: {answer.GetProperty("explanation").GetString()}");
        }));

        foreach (var command in new[] { get, set, validate, test }) policy.Add(command);
        return policy;
    }
}
