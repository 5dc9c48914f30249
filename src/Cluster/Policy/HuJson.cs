using System.Globalization;
using System.Text;

namespace Weft.Cluster.Policy;

public enum HuKind
{
    Object,
    Array,
    String,
    Number,
    Boolean,
    Null,
}

/// <summary>A HuJSON value with where it starts in the text (1-based line and column), for precise errors.</summary>
public sealed class HuValue
{
    public required HuKind Kind { get; init; }
    public required int Line { get; init; }
    public required int Column { get; init; }
    /// <summary>The string's value, or a number's text.</summary>
    public string? Text { get; init; }
    public bool Boolean { get; init; }
    public IReadOnlyList<HuMember> Members { get; init; } = [];
    public IReadOnlyList<HuValue> Items { get; init; } = [];

    public string Where => $"line {Line}, column {Column}";

    public string Describe() => Kind switch
    {
        HuKind.Object => "an object",
        HuKind.Array => "an array",
        HuKind.String => "a string",
        HuKind.Number => "a number",
        HuKind.Boolean => "a boolean",
        _ => "null",
    };
}

public sealed record HuMember(string Name, int Line, int Column, HuValue Value);

/// <summary>Malformed HuJSON: where, and what was expected.</summary>
public sealed class HuJsonException(int line, int column, string message) : Exception($"line {line}, column {column}: {message}")
{
    public int Line { get; } = line;
    public int Column { get; } = column;
    public string Reason { get; } = message;
}

/// <summary>
/// HuJSON ("human JSON", as Tailscale policy files are written): JSON plus <c>//</c> and <c>/* */</c>
/// comments and trailing commas in objects and arrays. Strict otherwise: duplicate keys, stray
/// characters, depth beyond <see cref="MaxDepth"/> and text beyond <see cref="MaxLength"/> are errors.
/// </summary>
public sealed class HuJson
{
    public const int MaxLength = 512 * 1024;
    public const int MaxDepth = 64;

    private readonly string _text;
    private int _position;
    private int _line = 1;
    private int _lineStart;

    private HuJson(string text) => _text = text;

    public static HuValue Parse(string text)
    {
        if (text.Length > MaxLength) throw new HuJsonException(1, 1, $"the policy is {text.Length} characters; the limit is {MaxLength}");
        var parser = new HuJson(text);
        parser.SkipSpace();
        if (parser.AtEnd) throw parser.Error("expected a JSON value, found the end of the text");
        var value = parser.ParseValue(0);
        parser.SkipSpace();
        if (!parser.AtEnd) throw parser.Error($"expected the end of the text after the top-level value, found {parser.Found()}");
        return value;
    }

    private bool AtEnd => _position >= _text.Length;

    private int Column => _position - _lineStart + 1;

    private HuJsonException Error(string message) => new(_line, Column, message);

    private string Found() => AtEnd ? "the end of the text" : _text[_position] switch
    {
        '\n' => "a line break",
        var c when char.IsControl(c) => $"control character U+{(int)c:X4}",
        var c => $"'{c}'",
    };

    private void Advance()
    {
        if (_text[_position] == '\n')
        {
            _line++;
            _lineStart = _position + 1;
        }
        _position++;
    }

    private void SkipSpace()
    {
        while (!AtEnd)
        {
            var c = _text[_position];
            if (c is ' ' or '\t' or '\r' or '\n' or '\uFEFF')
            {
                Advance();
            }
            else if (c == '/' && _position + 1 < _text.Length && _text[_position + 1] == '/')
            {
                while (!AtEnd && _text[_position] != '\n') Advance();
            }
            else if (c == '/' && _position + 1 < _text.Length && _text[_position + 1] == '*')
            {
                var (line, column) = (_line, Column);
                Advance();
                Advance();
                while (!AtEnd && !(_text[_position] == '*' && _position + 1 < _text.Length && _text[_position + 1] == '/')) Advance();
                if (AtEnd) throw new HuJsonException(line, column, "this /* comment is never closed with */");
                Advance();
                Advance();
            }
            else
            {
                return;
            }
        }
    }

    private HuValue ParseValue(int depth)
    {
        if (depth > MaxDepth) throw Error($"values are nested deeper than {MaxDepth} levels");
        var (line, column) = (_line, Column);
        switch (_text[_position])
        {
            case '{':
                return ParseObject(depth, line, column);
            case '[':
                return ParseArray(depth, line, column);
            case '"':
                return new HuValue { Kind = HuKind.String, Line = line, Column = column, Text = ParseString() };
            case 't':
                Expect("true");
                return new HuValue { Kind = HuKind.Boolean, Line = line, Column = column, Boolean = true };
            case 'f':
                Expect("false");
                return new HuValue { Kind = HuKind.Boolean, Line = line, Column = column, Boolean = false };
            case 'n':
                Expect("null");
                return new HuValue { Kind = HuKind.Null, Line = line, Column = column };
            case var c when c == '-' || char.IsAsciiDigit(c):
                return new HuValue { Kind = HuKind.Number, Line = line, Column = column, Text = ParseNumber() };
            default:
                throw Error($"expected a value (object, array, string, number, true, false or null), found {Found()}");
        }
    }

    private void Expect(string word)
    {
        if (string.CompareOrdinal(_text, _position, word, 0, word.Length) != 0)
            throw Error($"expected {word}, found {Found()}");
        for (var i = 0; i < word.Length; i++) Advance();
    }

    private HuValue ParseObject(int depth, int line, int column)
    {
        Advance(); // {
        var members = new List<HuMember>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        while (true)
        {
            SkipSpace();
            if (AtEnd) throw Error("expected '}' or a member name, found the end of the text");
            if (_text[_position] == '}')
            {
                Advance();
                return new HuValue { Kind = HuKind.Object, Line = line, Column = column, Members = members };
            }
            if (_text[_position] != '"') throw Error($"expected a member name in double quotes or '}}', found {Found()}");
            var (nameLine, nameColumn) = (_line, Column);
            var name = ParseString();
            if (!names.Add(name)) throw new HuJsonException(nameLine, nameColumn, $"duplicate member \"{name}\"");
            SkipSpace();
            if (AtEnd || _text[_position] != ':') throw Error($"expected ':' after \"{name}\", found {Found()}");
            Advance();
            SkipSpace();
            if (AtEnd) throw Error($"expected a value for \"{name}\", found the end of the text");
            members.Add(new HuMember(name, nameLine, nameColumn, ParseValue(depth + 1)));
            SkipSpace();
            if (AtEnd) throw Error("expected ',' or '}', found the end of the text");
            if (_text[_position] == ',') Advance();
            else if (_text[_position] != '}') throw Error($"expected ',' or '}}' after the value of \"{name}\", found {Found()}");
        }
    }

    private HuValue ParseArray(int depth, int line, int column)
    {
        Advance(); // [
        var items = new List<HuValue>();
        while (true)
        {
            SkipSpace();
            if (AtEnd) throw Error("expected ']' or a value, found the end of the text");
            if (_text[_position] == ']')
            {
                Advance();
                return new HuValue { Kind = HuKind.Array, Line = line, Column = column, Items = items };
            }
            items.Add(ParseValue(depth + 1));
            SkipSpace();
            if (AtEnd) throw Error("expected ',' or ']', found the end of the text");
            if (_text[_position] == ',') Advance();
            else if (_text[_position] != ']') throw Error($"expected ',' or ']' after an array element, found {Found()}");
        }
    }

    private string ParseString()
    {
        Advance(); // opening quote
        var value = new StringBuilder();
        while (true)
        {
            if (AtEnd) throw Error("this string is never closed with '\"'");
            var c = _text[_position];
            if (c == '"')
            {
                Advance();
                return value.ToString();
            }
            if (c < ' ') throw Error($"strings cannot contain {Found()}; write it as an escape");
            if (c != '\\')
            {
                value.Append(c);
                Advance();
                continue;
            }
            Advance();
            if (AtEnd) throw Error("an escape sequence is cut off by the end of the text");
            var escape = _text[_position];
            switch (escape)
            {
                case '"' or '\\' or '/': value.Append(escape); break;
                case 'b': value.Append('\b'); break;
                case 'f': value.Append('\f'); break;
                case 'n': value.Append('\n'); break;
                case 'r': value.Append('\r'); break;
                case 't': value.Append('\t'); break;
                case 'u':
                    if (_position + 4 >= _text.Length || !ushort.TryParse(_text.AsSpan(_position + 1, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var code))
                        throw Error("expected four hex digits after \\u");
                    value.Append((char)code);
                    for (var i = 0; i < 4; i++) Advance();
                    break;
                default:
                    throw Error($"unknown escape \\{escape}");
            }
            Advance();
        }
    }

    private string ParseNumber()
    {
        var start = _position;
        if (_text[_position] == '-') Advance();
        if (AtEnd || !char.IsAsciiDigit(_text[_position])) throw Error($"expected a digit, found {Found()}");
        if (_text[_position] == '0') Advance();
        else while (!AtEnd && char.IsAsciiDigit(_text[_position])) Advance();
        if (!AtEnd && _text[_position] == '.')
        {
            Advance();
            if (AtEnd || !char.IsAsciiDigit(_text[_position])) throw Error($"expected a digit after '.', found {Found()}");
            while (!AtEnd && char.IsAsciiDigit(_text[_position])) Advance();
        }
        if (!AtEnd && _text[_position] is 'e' or 'E')
        {
            Advance();
            if (!AtEnd && _text[_position] is '+' or '-') Advance();
            if (AtEnd || !char.IsAsciiDigit(_text[_position])) throw Error($"expected a digit in the exponent, found {Found()}");
            while (!AtEnd && char.IsAsciiDigit(_text[_position])) Advance();
        }
        return _text[start.._position];
    }
}
