using System.Collections.Frozen;
using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Weft.Cluster.WebConsole;

/// <summary>
/// The web console at <c>/admin</c>: three static files (WebConsole/site) built into the executable and
/// served as they are. The page signs in with an API key and does everything through the admin API
/// (<c>/api/v1</c>), so it can do no more than the key allows. A strict content security policy lets
/// it load only its own script and style and talk only to this origin.
/// </summary>
public static class AdminConsole
{
    public const string Path = "/admin";

    private const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    private static readonly FrozenDictionary<string, (byte[] Content, string ContentType)> Files = Load();

    public static void MapAdminConsole(this WebApplication app)
    {
        app.MapGet(Path, (HttpContext http) => Serve(http, "index.html"));
        app.MapGet(Path + "/{file}", (HttpContext http, string file) => Serve(http, file));
    }

    private static IResult Serve(HttpContext http, string file)
    {
        if (!Files.TryGetValue(file, out var found))
            throw new Api.ApiException(Contracts.Admin.ApiErrorCodes.NotFound, $"no such console file: {file}");
        var headers = http.Response.Headers;
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers.XContentTypeOptions = "nosniff";
        headers["Referrer-Policy"] = "no-referrer";
        headers.CacheControl = "no-cache";
        return Results.Bytes(found.Content, found.ContentType);
    }

    private static FrozenDictionary<string, (byte[], string)> Load()
    {
        var assembly = Assembly.GetExecutingAssembly();
        const string prefix = "Weft.Console.";
        var files = new Dictionary<string, (byte[], string)>();
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith(prefix, StringComparison.Ordinal)))
        {
            using var stream = assembly.GetManifestResourceStream(name)!;
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            var file = name[prefix.Length..];
            files[file] = (copy.ToArray(), System.IO.Path.GetExtension(file) switch
            {
                ".html" => "text/html; charset=utf-8",
                ".js" => "text/javascript; charset=utf-8",
                ".css" => "text/css; charset=utf-8",
                _ => "application/octet-stream",
            });
        }
        return files.ToFrozenDictionary();
    }
}
