using System.Globalization;

namespace Weft.Cluster.Api;

/// <summary>What the admin API reads from a query string, and how it quotes a bad value back.</summary>
public static class QueryParameters
{
    /// <summary><c>?limit=</c>: a whole number from 1 to <paramref name="max"/>; null when absent.</summary>
    public static int? Limit(string? text, int max) =>
        string.IsNullOrEmpty(text) ? null
        : int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var limit) && limit >= 1 && limit <= max ? limit
        : throw ApiException.Invalid($"limit must be a whole number from 1 to {max}; got '{Printable(text)}'");

    /// <summary>A value as an error quotes it: at most 40 characters.</summary>
    public static string Printable(string text) => text.Length <= 40 ? text : text[..40] + "…";
}
