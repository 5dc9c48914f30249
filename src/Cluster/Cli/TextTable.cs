namespace Weft.Cluster.Cli;

/// <summary>Left-aligned columns separated by two spaces, like <c>kubectl get</c>.</summary>
public static class TextTable
{
    public static string Render(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = new List<IReadOnlyList<string>> { headers };
        all.AddRange(rows.Select(r => (IReadOnlyList<string>)r.Select(Format.Printable).ToList()));
        var widths = headers.Select((_, i) => all.Max(r => r[i].Length)).ToArray();
        var lines = all.Select(r => string.Join("  ", r.Select((cell, i) => i == r.Count - 1 ? cell : cell.PadRight(widths[i]))).TrimEnd());
        return string.Join(Environment.NewLine, lines) + Environment.NewLine;
    }

    public static string RenderFields(IEnumerable<(string Label, string Value)> fields)
    {
        var list = fields.Select(f => (f.Label, Value: Format.Printable(f.Value))).ToList();
        var width = list.Max(f => f.Label.Length);
        return string.Join(Environment.NewLine, list.Select(f => $"{f.Label.PadRight(width)}  {f.Value}")) + Environment.NewLine;
    }
}
