using Weft.Cluster.Policy;

namespace Weft.Cluster.Tests.Policy;

public class HuJsonTests
{
    [Fact]
    public void Comments_and_trailing_commas_are_accepted()
    {
        var value = HuJson.Parse("""
            // a policy
            {
              /* block
                 comment */ "acls": [1, 2, 3,], // trailing
              "x": {"y": "z\n\u0041",},
            }
            """);

        Assert.Equal(HuKind.Object, value.Kind);
        Assert.Equal(["acls", "x"], value.Members.Select(m => m.Name));
        Assert.Equal(3, value.Members[0].Value.Items.Count);
        Assert.Equal("z\nA", value.Members[1].Value.Members[0].Value.Text);
        Assert.Equal((4, 17), (value.Members[0].Line, value.Members[0].Column));
    }

    [Theory]
    [InlineData("{\"a\": 1 \"b\": 2}", 1, 9, "expected ',' or '}'")]
    [InlineData("{\n  \"a\": \"unterminated\n}", 2, 21, "strings cannot contain a line break")]
    [InlineData("{\"a\": [1, 2}", 1, 12, "expected ',' or ']'")]
    [InlineData("{\"a\": 1, \"a\": 2}", 1, 10, "duplicate member \"a\"")]
    [InlineData("{\"a\": tru}", 1, 7, "expected true")]
    [InlineData("{\"a\": \"\\q\"}", 1, 9, "unknown escape \\q")]
    [InlineData("{} extra", 1, 4, "expected the end of the text")]
    [InlineData("/* never closed", 1, 1, "never closed")]
    [InlineData("", 1, 1, "found the end of the text")]
    [InlineData("{\"a\": -}", 1, 8, "expected a digit")]
    public void Malformed_text_is_an_error_with_its_line_and_column(string text, int line, int column, string expected)
    {
        var error = Assert.Throws<HuJsonException>(() => HuJson.Parse(text));

        Assert.Equal((line, column), (error.Line, error.Column));
        Assert.Contains(expected, error.Reason);
    }

    [Fact]
    public void Depth_and_size_are_limited()
    {
        var deep = new string('[', HuJson.MaxDepth + 2) + new string(']', HuJson.MaxDepth + 2);
        Assert.Contains("nested deeper", Assert.Throws<HuJsonException>(() => HuJson.Parse(deep)).Reason);
        var huge = "[\"" + new string('x', HuJson.MaxLength) + "\"]";
        Assert.Contains("limit", Assert.Throws<HuJsonException>(() => HuJson.Parse(huge)).Reason);
    }
}
