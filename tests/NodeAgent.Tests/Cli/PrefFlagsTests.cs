using Weft.NodeAgent.Agent;
using Weft.NodeAgent.Cli;

namespace Weft.NodeAgent.Tests.Cli;

/// <summary>What <c>up</c>, <c>login</c> and <c>set</c> send: only the flags given, so that the daemon keeps the rest of its prefs.</summary>
public class PrefFlagsTests
{
    private static PrefsChange Parse(string command, params string[] arguments)
    {
        var change = ControlCommands.ParsePrefsChange(command, arguments, out var problem);
        Assert.True(change is not null, problem);
        return change!;
    }

    [Fact]
    public void Switches_not_given_change_nothing()
    {
        var change = Parse("up", "--hostname", "box");

        Assert.Equal("box", change.Hostname);
        Assert.Null(change.AcceptRoutes);
        Assert.Null(change.AdvertiseExitNode);
        Assert.Null(change.AcceptDns);
        Assert.Null(change.LoginServer);
        Assert.Null(change.AdvertiseRoutes);
        Assert.False(change.ForceReauth);

        // Applied to prefs that accept routes and offer an exit node, they stay so.
        var prefs = new AgentPrefs { AcceptRoutes = true, AdvertisedRoutes = ["0.0.0.0/0", "::/0"], AcceptDns = false };
        Assert.Equal(prefs with { Hostname = "box" }, prefs.With(change), AgentPrefsComparer.Instance);
    }

    [Theory]
    [InlineData("--accept-routes", true)]
    [InlineData("--accept-routes=false", false)]
    [InlineData("--accept-routes=true", true)]
    public void A_switch_given_says_what_it_says(string flag, bool expected) =>
        Assert.Equal(expected, Parse("set", flag).AcceptRoutes);

    [Fact]
    public void Exit_node_and_dns_switches_turn_off_as_well_as_on()
    {
        Assert.False(Parse("set", "--accept-dns=false").AcceptDns);
        var withdrawn = new AgentPrefs { AdvertisedRoutes = ["198.51.100.0/24", "0.0.0.0/0", "::/0"] }.With(Parse("set", "--advertise-exit-node=false"));
        Assert.Equal(new[] { "198.51.100.0/24" }, withdrawn.AdvertisedRoutes.ToArray());
    }

    [Theory]
    [InlineData("up", "--login-server", "ftp://x", "not an http(s) URL")]
    [InlineData("up", "--advertise-routes", "0.0.0.0/0", "use --advertise-exit-node")]
    [InlineData("up", "--force-reauth", "--hostname=x", "needs an auth key")]
    [InlineData("set", "--hostname", "two words", "without spaces")]
    public void Bad_flags_are_refused_with_the_reason(string command, string flag, string value, string reason)
    {
        Assert.Null(ControlCommands.ParsePrefsChange(command, [flag, value], out var problem));
        Assert.Contains(reason, problem);
    }

    /// <summary>Records with arrays compare the arrays by reference; prefs are equal when their contents are.</summary>
    private sealed class AgentPrefsComparer : IEqualityComparer<AgentPrefs>
    {
        public static readonly AgentPrefsComparer Instance = new();

        public bool Equals(AgentPrefs? x, AgentPrefs? y) =>
            x is not null && y is not null && x.AdvertisedRoutes.SequenceEqual(y.AdvertisedRoutes) && x.LoginServers.SequenceEqual(y.LoginServers)
            && x with { AdvertisedRoutes = [], LoginServers = [] } == y with { AdvertisedRoutes = [], LoginServers = [] };

        public int GetHashCode(AgentPrefs obj) => 0;
    }
}
