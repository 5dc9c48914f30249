using System.CommandLine;
using System.Text.Json;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Cli;

/// <summary>The options every admin subcommand shares, and how it reports failures.</summary>
internal sealed class ClientOptions
{
    private readonly Option<string> _server = new("--server")
    {
        Description = "Coordinator admin API; several, comma-separated, to fail over between nodes (env WEFT_SERVER)",
        Recursive = true,
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("WEFT_SERVER") ?? "http://127.0.0.1:8080",
    };
    // No default value: --help prints defaults, and this one would be a secret. WEFT_API_KEY is read when the command runs.
    private readonly Option<string?> _apiKey = new("--api-key")
    {
        Description = "API key (env WEFT_API_KEY)",
        Recursive = true,
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
        var servers = new List<Uri>();
        foreach (var server in parse.GetValue(_server)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!Uri.TryCreate(server, UriKind.Absolute, out var parsed))
            {
                Console.Error.WriteLine($"error: --server '{server}' is not an absolute URL");
                return 2;
            }
            servers.Add(parsed);
        }
        if (servers.Count == 0)
        {
            Console.Error.WriteLine("error: --server names no coordinator");
            return 2;
        }
        var uri = servers[0];
        using var api = new AdminApiClient(servers, parse.GetValue(_apiKey) ?? Environment.GetEnvironmentVariable("WEFT_API_KEY"));
        try
        {
            await work(api);
            return 0;
        }
        catch (AdminApiError e)
        {
            if (e.Issues.Count == 0) Console.Error.WriteLine($"error: {e.Message} ({e.Code})");
            else
            {
                Console.Error.WriteLine($"error: {e.Issues.Count} problem(s) ({e.Code}):");
                foreach (var issue in e.Issues) Console.Error.WriteLine($"  line {issue.Line}, column {issue.Column} ({issue.Path}): {issue.Message}");
            }
            return 1;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            // Refused, or not answered within the client's timeout at any coordinator named (the same exit as refused).
            Console.Error.WriteLine($"error: cannot reach the coordinator at {uri}: {(e is TaskCanceledException ? "it did not answer in time" : e.Message)}");
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
            ("created", Format.Time(tailnet.GetProperty("createdAt"))),
            ("node key expiry", $"{settings.GetProperty("nodeKeyExpiryDays").GetInt32()} days"),
            ("dns suffix", settings.GetProperty("dnsSuffix").GetString()!),
            ("ephemeral timeout", $"{settings.GetProperty("ephemeralTimeoutSeconds").GetInt32()} s"),
            ("keyless registration", settings.TryGetProperty("keylessRegistration", out var keyless) && keyless.GetBoolean() ? "on" : "off"),
        ]));
    }
}

/// <summary>How the CLI shows values from the API.</summary>
internal static class Format
{
    public static string Time(JsonElement value) =>
        value.ValueKind == JsonValueKind.String ? value.GetDateTimeOffset().ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss'Z'") : "-";

    public static string Text(JsonElement parent, string property) =>
        parent.TryGetProperty(property, out var value) && value.ValueKind != JsonValueKind.Null
            ? Printable(value.ValueKind == JsonValueKind.String ? value.GetString()! : value.ToString())
            : "-";

    public static string List(JsonElement parent, string property) =>
        parent.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.Array && value.GetArrayLength() > 0
            ? Printable(string.Join(",", value.EnumerateArray().Select(v => v.GetString())))
            : "-";

    /// <summary>
    /// What a device reports (its hostname, OS) reaches the operator's terminal: control characters
    /// (escape sequences, carriage returns) and bidirectional overrides are shown as \uXXXX, never obeyed.
    /// </summary>
    public static string Printable(string text)
    {
        if (!text.Any(NotPrintable)) return text;
        var builder = new System.Text.StringBuilder(text.Length + 16);
        foreach (var c in text) builder.Append(NotPrintable(c) ? $"\\u{(int)c:x4}" : c.ToString());
        return builder.ToString();
    }

    private static bool NotPrintable(char c) =>
        char.IsControl(c) || c is (>= '\u202a' and <= '\u202e') or (>= '\u2066' and <= '\u2069') or '\u200e' or '\u200f';
}
