using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// A request body read strictly: bounded in size, valid JSON, an object, only known fields, and
/// each field of the right type. Every failure names the field and what was expected.
/// </summary>
public sealed class JsonRequestBody
{
    /// <summary>Admin bodies are small; policies (later) get their own, larger limit.</summary>
    public const int DefaultMaxBytes = 64 * 1024;

    private readonly JsonElement _root;

    private JsonRequestBody(JsonElement root) => _root = root;

    public static async Task<JsonRequestBody> ReadAsync(HttpRequest request, int maxBytes = DefaultMaxBytes)
    {
        if (request.ContentType is { } type && !type.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
            throw new ApiException(ApiErrorCodes.UnsupportedMediaType, $"send the body as application/json, not {type}");
        if (request.ContentLength > maxBytes)
            throw new ApiException(ApiErrorCodes.PayloadTooLarge, $"body is {request.ContentLength} bytes; the limit is {maxBytes}");

        var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, request.HttpContext.RequestAborted)) > 0)
        {
            if (buffer.Length + read > maxBytes)
                throw new ApiException(ApiErrorCodes.PayloadTooLarge, $"body exceeds the limit of {maxBytes} bytes");
            buffer.Write(chunk, 0, read);
        }
        if (buffer.Length == 0) throw ApiException.Invalid("request body is empty; expected a JSON object");

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(buffer.ToArray(), new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException e)
        {
            var where = e.LineNumber is { } line ? $" at line {line + 1}, byte {e.BytePositionInLine + 1}" : "";
            throw new ApiException(ApiErrorCodes.MalformedJson, $"body is not valid JSON{where}");
        }
        if (document.RootElement.ValueKind != JsonValueKind.Object)
            throw ApiException.Invalid($"body must be a JSON object, got {Describe(document.RootElement.ValueKind)}");
        RequireTextStrings(document.RootElement);
        return new JsonRequestBody(document.RootElement);
    }

    /// <summary>
    /// JSON syntax allows strings that are not text: invalid UTF-8, or an escaped lone surrogate
    /// (<c>"\ud800"</c>). Reading one later would fail deep inside an endpoint; refuse them here.
    /// </summary>
    private static void RequireTextStrings(JsonElement element)
    {
        try
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.String:
                    element.GetString();
                    break;
                case JsonValueKind.Object:
                    foreach (var property in element.EnumerateObject())
                    {
                        _ = property.Name;
                        RequireTextStrings(property.Value);
                    }
                    break;
                case JsonValueKind.Array:
                    foreach (var item in element.EnumerateArray()) RequireTextStrings(item);
                    break;
            }
        }
        catch (InvalidOperationException)
        {
            throw new ApiException(ApiErrorCodes.MalformedJson, "body holds a string that is not text (invalid UTF-8, or a lone surrogate escape)");
        }
    }

    /// <summary>Refuses fields this endpoint does not know: a typo must not pass silently.</summary>
    public JsonRequestBody AllowOnly(params string[] fields)
    {
        foreach (var property in _root.EnumerateObject())
        {
            if (!fields.Contains(property.Name, StringComparer.Ordinal))
                throw ApiException.Invalid($"unknown field '{property.Name}'; allowed: {string.Join(", ", fields)}");
        }
        return this;
    }

    public string RequiredString(string field) =>
        OptionalString(field) ?? throw ApiException.Invalid($"missing required field '{field}'");

    public string? OptionalString(string field)
    {
        if (!_root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : throw ApiException.Invalid($"field '{field}' must be a string, got {Describe(value.ValueKind)}");
    }

    public int? OptionalInt(string field)
    {
        if (!_root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number)
            throw ApiException.Invalid($"field '{field}' must be an integer, got {Describe(value.ValueKind)}");
        return value.TryGetInt32(out var number)
            ? number
            : throw ApiException.Invalid($"field '{field}' must be a whole number within 32-bit range, got {value.GetRawText()}");
    }

    public bool? OptionalBool(string field)
    {
        if (!_root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? value.GetBoolean()
            : throw ApiException.Invalid($"field '{field}' must be true or false, got {Describe(value.ValueKind)}");
    }

    /// <summary>An array of strings, at most <paramref name="maxItems"/> long.</summary>
    public IReadOnlyList<string>? OptionalStringList(string field, int maxItems = 64)
    {
        if (!_root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Array)
            throw ApiException.Invalid($"field '{field}' must be an array of strings, got {Describe(value.ValueKind)}");
        if (value.GetArrayLength() > maxItems)
            throw ApiException.Invalid($"field '{field}' holds {value.GetArrayLength()} items; the limit is {maxItems}");
        var items = new List<string>();
        var index = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
                throw ApiException.Invalid($"field '{field}[{index}]' must be a string, got {Describe(item.ValueKind)}");
            items.Add(item.GetString()!);
            index++;
        }
        return items;
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };
}
