using Weft.Cluster.Cli;

namespace Weft.Cluster.Tests.Cli;

public class TextTableTests
{
    [Fact]
    public void What_a_device_reports_is_shown_not_obeyed_by_the_terminal()
    {
        // A hostname that would clear the screen, rewrite the line and reverse the text after it.
        const string hostile = "box\u001b[2J\rroot\u202eevil\u0007";

        var table = TextTable.Render(["NAME", "OS"], [[hostile, "linux"]]);
        var fields = TextTable.RenderFields([("Name", hostile)]);

        foreach (var output in new[] { table, fields })
        {
            Assert.DoesNotContain('\u001b', output);
            Assert.DoesNotContain('\r', output);
            Assert.DoesNotContain('\u202e', output);
            Assert.DoesNotContain('\u0007', output);
            Assert.Contains(@"box\u001b[2J\u000droot\u202eevil\u0007", output);
        }
        Assert.Equal("NAME" + new string(' ', @"box\u001b[2J\u000droot\u202eevil\u0007".Length - 2) + "OS", table.Split(Environment.NewLine)[0]);
    }
}
